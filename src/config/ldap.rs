//! `ldap`: mxisd's LDAP / Active Directory identity store; `netiq` is the same store under
//! another name (mxisd's docs), and only one of them may be enabled.

use super::check::Resolver;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct LdapConfig {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    pub start_tls: bool,
    pub ca_file: Option<PathBuf>,
    pub bind_dn: String,
    pub bind_password: String,
    pub base_dns: Vec<String>,
    pub timeout: Duration,
    pub active_directory: bool,
    pub default_domain: Option<String>,
    /// The filter of every search whose flow has no filter of its own (e.g. group
    /// membership): a flow's filter replaces it, as in mxisd 1.4.
    pub filter: String,
    /// The attribute holding the user id, and whether it is a full Matrix ID.
    pub uid_attribute: String,
    pub uid_is_mxid: bool,
    pub name_attribute: String,
    /// Attributes holding each medium's addresses.
    pub threepid_attributes: std::collections::BTreeMap<String, Vec<String>>,
    /// The filter of lookups and of the listing, instead of `filter` when not empty.
    pub identity_filter: String,
    /// Per-medium lookup filter templates; `token` stands for the escaped address.
    pub identity_medium_filters: std::collections::BTreeMap<String, String>,
    pub identity_token: String,
    /// The filter of the search for a user logging in, instead of `filter` when not empty.
    pub auth_filter: String,
    /// Whether the directory's bindings are listed into the hash index of v2 lookups
    /// (`ldap.identity.lookup`, or mxisd's documented `ldap.lookup`).
    pub listed: bool,
}

impl Resolver<'_> {
    /// The section `name` (`ldap` or `netiq`), when enabled.
    pub(super) fn ldap(&mut self, name: &str, l: raw::Ldap) -> Result<Option<LdapConfig>, String> {
        if l.enabled != Some(true) {
            return Ok(None);
        }
        let key = |k: &str| format!("{name}.{k}");
        self.unsupported(name, &l.unsupported());
        let c = l.connection.unwrap_or_default();
        let host = self
            .non_empty(&key("connection.host"), c.host)?
            .ok_or_else(|| self.required(&key("connection.host"), ""))?;
        let tls = c.tls.unwrap_or(false);
        let start_tls = c.start_tls.unwrap_or(false);
        if tls && start_tls {
            return Err(self.at(
                &key("connection.startTls"),
                "cannot be used with tls (LDAPS): pick one",
            ));
        }
        let port = c.port.unwrap_or(if tls { 636 } else { 389 });
        let url = format!("{}://{host}:{port}", if tls { "ldaps" } else { "ldap" });
        let mut base_dns = c.base_dns.unwrap_or_default();
        base_dns.extend(c.base_dn);
        base_dns.retain(|b| !b.trim().is_empty());
        if base_dns.is_empty() {
            return Err(self.required(&key("connection.baseDNs"), ": at least one base DN"));
        }
        let ca_file = self.pem_file(&key("connection.caFile"), c.ca_file)?;
        let timeout = self.seconds(&key("connection.timeout"), c.timeout, 5, 300)?;
        let active_directory = l.active_directory.unwrap_or(false);
        let attribute = l.attribute.unwrap_or_default();
        let uid = attribute.uid.unwrap_or_default();
        let uid_is_mxid = match uid.kind.as_deref() {
            None | Some("uid") => false,
            Some("mxid") => true,
            Some(other) => {
                return Err(self.at(
                    &key("attribute.uid.type"),
                    format!("'{other}' is not uid or mxid"),
                ))
            }
        };
        // mxisd's defaults, made for Active Directory; an OpenLDAP directory sets
        // `attribute.uid.value: uid` (the example config does).
        let mut threepid_attributes = std::collections::BTreeMap::new();
        threepid_attributes.insert(
            "email".to_owned(),
            ["mailPrimaryAddress", "mail", "otherMailbox"]
                .map(str::to_owned)
                .to_vec(),
        );
        threepid_attributes.insert(
            "msisdn".to_owned(),
            [
                "telephoneNumber",
                "mobile",
                "homePhone",
                "otherTelephone",
                "otherMobile",
                "otherHomePhone",
            ]
            .map(str::to_owned)
            .to_vec(),
        );
        threepid_attributes.extend(attribute.threepid.unwrap_or_default());
        let identity = l.identity.unwrap_or_default();
        // mxisd's docs say `ldap.lookup`, its code reads `ldap.identity.lookup`: either.
        let listed = match (l.lookup, identity.lookup) {
            (Some(a), Some(b)) if a != b => {
                return Err(self.at(
                    &key("identity.lookup"),
                    format!("{b}, but `{name}.lookup` says {a}: keep one"),
                ))
            }
            (a, b) => a.or(b).unwrap_or(true),
        };
        Ok(Some(LdapConfig {
            url,
            start_tls,
            ca_file,
            bind_dn: c.bind_dn.unwrap_or_default(),
            bind_password: c.bind_password.unwrap_or_default(),
            base_dns,
            timeout,
            active_directory,
            default_domain: l.default_domain.filter(|d| !d.trim().is_empty()),
            filter: l.filter.unwrap_or_default(),
            uid_attribute: uid.value.unwrap_or_else(|| "saMAccountName".into()),
            uid_is_mxid,
            name_attribute: attribute.name.unwrap_or_else(|| "displayName".into()),
            threepid_attributes,
            identity_filter: identity.filter.unwrap_or_default(),
            identity_medium_filters: identity.medium.unwrap_or_default(),
            identity_token: identity.token.unwrap_or_else(|| "%3pid".into()),
            auth_filter: l.auth.and_then(|a| a.filter).unwrap_or_default(),
            listed,
        }))
    }
}

/// `ldap` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        /// mxisd's LDAP / Active Directory identity store.
        Ldap {
            enabled: bool = "enabled",
            active_directory: bool = "activeDirectory",
            default_domain: String = "defaultDomain",
            filter: String = "filter",
            connection: LdapConnection = "connection",
            attribute: LdapAttribute = "attribute",
            identity: LdapIdentity = "identity",
            auth: LdapAuth = "auth",
            lookup: bool = "lookup",
        } unsupported {
            directory = "directory",
            profile = "profile",
        }
    }
    section! {
        LdapConnection {
            host: String = "host",
            port: u16 = "port",
            tls: bool = "tls",
            start_tls: bool = "startTls",
            ca_file: String = "caFile",
            bind_dn: String = "bindDn",
            bind_password: String = "bindPassword",
            base_dns: Vec<String> = "baseDNs",
            base_dn: String = "baseDn",
            timeout: u64 = "timeout",
        }
    }
    section! {
        LdapAttribute {
            uid: LdapUid = "uid",
            name: String = "name",
            threepid: std::collections::BTreeMap<String, Vec<String>> = "threepid",
        }
    }
    section! {
        LdapUid {
            kind: String = "type",
            value: String = "value",
        }
    }
    section! {
        LdapIdentity {
            filter: String = "filter",
            token: String = "token",
            medium: std::collections::BTreeMap<String, String> = "medium",
            lookup: bool = "lookup",
        }
    }
    section! {
        LdapAuth {
            filter: String = "filter",
        }
    }
}
