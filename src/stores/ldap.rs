//! mxisd's LDAP / Active Directory identity store (`ldap.*`), over ldap3's blocking
//! `LdapConn`.
//!
//! - A 3PID is found by a search over the medium's attributes (`attribute.threepid.<medium>`)
//!   or with its template (`identity.medium.<medium>`), ANDed with the lookup filter; values
//!   put into filters are escaped as RFC 4515 says, so an address like `*)(uid=*` matches
//!   nothing.
//! - A flow's own filter (`identity.filter` for lookups and listing, `auth.filter` for logins)
//!   replaces `ldap.filter` when set, as in mxisd 1.4; when empty, `ldap.filter` applies.
//! - The Matrix ID comes from `attribute.uid`: a full Matrix ID, or a user id made
//!   `@<uid>:<matrix.domain>` (for Active Directory, a `user@domain` principal gives `user`).
//! - Listing for the hash index uses paged results (RFC 2696): slapd stops unpaged searches at
//!   500 entries and AD pages by 1,000. It lists exactly what single lookups find: the
//!   lookup filter, and each medium's template checked on the entry (`ldap_template`).
//! - A small pool of bound connections, remade after a failure; every operation has a timeout.

use super::ldap_template::Template;
use super::{by_medium, AuthenticatedUser, Binding, IdentityStore, StoreError};
use crate::config::LdapConfig;
use crate::pool::Pool;
use crate::threepid::{self, Medium};
use crate::user_id::UserId;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{ldap_escape, LdapConn, LdapConnSettings, Scope, SearchEntry};
use std::collections::BTreeMap;
use std::sync::Arc;

const PAGE_SIZE: i32 = 500;

/// Whether a pooled connection is used again after an operation that succeeded.
#[derive(Clone, Copy)]
enum Reuse {
    Yes,
    No,
}

pub struct LdapStore {
    cfg: LdapConfig,
    /// `attribute.threepid.<medium>`: the attributes holding each medium's addresses.
    threepid_attributes: BTreeMap<Medium, Vec<String>>,
    /// `identity.medium.<medium>`: lookup filter templates replacing the attribute search.
    medium_filters: BTreeMap<Medium, String>,
    /// Each listed medium's lookup template, to list what single lookups find (a medium
    /// whose template cannot be evaluated here is left out, with a warning at start).
    listing: BTreeMap<Medium, Template>,
    domain: String,
    region: Option<phonenumber::country::Id>,
    tls: Option<Arc<rustls::ClientConfig>>,
    pool: Pool<Option<LdapConn>>,
}

/// A user found in the directory.
pub struct LdapUser {
    pub mxid: String,
    pub display_name: Option<String>,
    pub threepids: Vec<(Medium, String)>,
}

impl LdapStore {
    /// The store of `cfg`, with `connections` connections (one per worker), each waited for
    /// at most twice the store's timeout (a connect and a bind).
    pub fn new(
        cfg: LdapConfig,
        domain: &str,
        region: Option<phonenumber::country::Id>,
        connections: usize,
    ) -> Result<LdapStore, String> {
        let tls = match &cfg.ca_file {
            Some(path) => Some(Arc::new(crate::tls::verifying(
                Some(path),
                "ldap.connection.caFile",
            )?)),
            None => None,
        };
        let threepid_attributes = by_medium(&cfg.threepid_attributes, "ldap.attribute.threepid")?;
        let medium_filters = by_medium(&cfg.identity_medium_filters, "ldap.identity.medium")?;
        let listing = listing_templates(&cfg, &threepid_attributes, &medium_filters);
        // A connection whose user panicked is remade.
        let pool = Pool::new((0..connections).map(|_| None).collect(), cfg.timeout * 2)
            .on_panic(|slot| *slot = None);
        Ok(LdapStore {
            cfg,
            threepid_attributes,
            medium_filters,
            listing,
            domain: domain.to_owned(),
            region,
            tls,
            pool,
        })
    }

    fn settings(&self) -> LdapConnSettings {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.cfg.timeout)
            .set_starttls(self.cfg.start_tls);
        match &self.tls {
            Some(tls) => settings.set_config(tls.clone()),
            None => settings,
        }
    }

    fn connect(&self) -> Result<LdapConn, StoreError> {
        let mut conn = LdapConn::with_settings(self.settings(), &self.cfg.url)
            .map_err(|e| self.error(format!("connecting to {}: {e}", self.cfg.url)))?;
        if !self.cfg.bind_dn.is_empty() {
            conn.with_timeout(self.cfg.timeout)
                .simple_bind(&self.cfg.bind_dn, &self.cfg.bind_password)
                .and_then(|r| r.success())
                .map_err(|e| self.error(format!("binding as {}: {e}", self.cfg.bind_dn)))?;
        }
        Ok(conn)
    }

    /// Runs `op` on a bound connection of the pool; a failed operation drops its connection,
    /// so the next one reconnects.
    fn with_conn<T>(
        &self,
        op: impl FnOnce(&mut LdapConn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_slot(Reuse::Yes, op)
    }

    fn with_slot<T>(
        &self,
        reuse: Reuse,
        op: impl FnOnce(&mut LdapConn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.pool
            .with(|slot: &mut Option<LdapConn>| {
                if slot.is_none() {
                    *slot = Some(self.connect()?);
                }
                let conn = slot.as_mut().ok_or_else(|| self.error("not connected"))?;
                let result = op(conn);
                if result.is_err() {
                    *slot = None;
                } else if let Reuse::No = reuse {
                    if let Some(mut done) = slot.take() {
                        let _ = done.unbind(); // a courtesy to the server; the socket closes anyway
                    }
                }
                result
            })
            .map_err(|e: StoreError| StoreError {
                store: self.name().into(),
                ..e
            })
    }

    /// Entries matching `filter` under every base DN (small result sets: lookups, logins).
    ///
    /// Not ldap3's `search`: it reads through an adapter, and ldap3 0.12 then never forgets
    /// the operation's message id, which a connection keeps in a set until it is dropped
    /// (about 9 bytes a search, for ever, on a pool that lives as long as the server: the
    /// soak's heap profile showed it growing). Read without an adapter, the stream's end
    /// forgets it.
    fn search(&self, filter: &str, attrs: &[String]) -> Result<Vec<SearchEntry>, StoreError> {
        self.with_conn(|conn| {
            let mut entries = Vec::new();
            for base in &self.cfg.base_dns {
                conn.with_timeout(self.cfg.timeout);
                entries
                    .extend(search_entries(conn, base, filter, attrs).map_err(|e| self.error(e))?);
            }
            Ok(entries)
        })
    }

    /// Every entry matching `filter`, page by page (RFC 2696), handed to `each` as it comes.
    fn search_paged(
        &self,
        filter: &str,
        attrs: &[String],
        each: &mut dyn FnMut(SearchEntry),
    ) -> Result<(), StoreError> {
        // Paging needs ldap3's adapters, so each page's message id stays in the connection
        // (see `search`): a listing's connection is not used again.
        self.with_slot(Reuse::No, |conn| {
            for base in &self.cfg.base_dns {
                let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
                    Box::new(EntriesOnly::new()),
                    Box::new(PagedResults::new(PAGE_SIZE)),
                ];
                let mut stream = conn
                    .with_timeout(self.cfg.timeout)
                    .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs.to_vec())
                    .map_err(|e| self.error(e))?;
                while let Some(entry) = stream.next().map_err(|e| self.error(e))? {
                    each(SearchEntry::construct(entry));
                }
                stream.result().success().map_err(|e| self.error(e))?;
            }
            Ok(())
        })
    }

    fn attributes(&self) -> Vec<String> {
        let mut attrs = vec![
            self.cfg.uid_attribute.clone(),
            self.cfg.name_attribute.clone(),
        ];
        attrs.extend(self.threepid_attributes.values().flatten().cloned());
        attrs
    }

    /// `(&<flow filter>(inner))`: a flow's own filter (`identity.filter`, `auth.filter`)
    /// replaces `ldap.filter`, as in mxisd 1.4; an empty one leaves `ldap.filter`.
    fn and(&self, flow: &str, inner: &str) -> String {
        let outer = if flow.trim().is_empty() {
            self.cfg.filter.as_str()
        } else {
            flow
        };
        if outer.trim().is_empty() {
            inner.to_owned()
        } else {
            format!("(&{outer}{inner})")
        }
    }

    fn lookup_filter(&self, medium: Medium, address: &str) -> Option<String> {
        let values = asked_values(medium, address);
        let inner = match self.medium_filters.get(&medium) {
            Some(template) => format!(
                "(|{})",
                values
                    .iter()
                    .map(|v| template.replace(&self.cfg.identity_token, &ldap_escape(v.as_str())))
                    .collect::<String>()
            ),
            None => {
                let attrs = self.threepid_attributes.get(&medium)?;
                let terms: String = attrs
                    .iter()
                    .flat_map(|a| {
                        values
                            .iter()
                            .map(move |v| format!("({a}={})", ldap_escape(v.as_str())))
                    })
                    .collect();
                format!("(|{terms})")
            }
        };
        Some(self.and(&self.cfg.identity_filter, &inner))
    }

    fn user(&self, entry: &SearchEntry) -> Option<LdapUser> {
        let first = |attr: &str| {
            entry
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(attr))
                .and_then(|(_, v)| v.first())
                .cloned()
        };
        let uid = first(&self.cfg.uid_attribute)?;
        let mxid = if self.cfg.uid_is_mxid {
            uid
        } else {
            // An AD user principal (`user@corp.example`) gives its user part.
            let local = if self.cfg.active_directory {
                uid.split('@').next().unwrap_or(&uid)
            } else {
                &uid
            };
            UserId::of(local, &self.domain).into_string()
        };
        let mut threepids = Vec::new();
        for (&medium, attrs) in &self.threepid_attributes {
            for (name, values) in &entry.attrs {
                if attrs.iter().any(|a| a.eq_ignore_ascii_case(name)) {
                    threepids.extend(
                        values
                            .iter()
                            .filter_map(|v| threepid::address(medium, v, self.region))
                            .map(|a| (medium, a)),
                    );
                }
            }
        }
        Some(LdapUser {
            mxid,
            display_name: first(&self.cfg.name_attribute),
            threepids,
        })
    }
}

impl IdentityStore for LdapStore {
    fn name(&self) -> &str {
        "ldap"
    }

    fn find(&self, medium: Medium, address: &str) -> Result<Option<String>, StoreError> {
        let Some(filter) = self.lookup_filter(medium, address) else {
            return Ok(None); // no attribute holds this medium
        };
        log::debug!(
            "ldap: search of {:?} (subtree) with filter {}",
            self.cfg.base_dns,
            loggable_filter(&filter)
        );
        let entries = self.search(&filter, &self.attributes())?;
        // Only a user who really has this address (the filter matched on it) counts.
        Ok(entries
            .iter()
            .filter_map(|e| self.user(e))
            .find(|u| {
                u.threepids
                    .iter()
                    .any(|(m, a)| *m == medium && a == address)
            })
            .map(|u| u.mxid))
    }

    fn authenticate(
        &self,
        user_id: &UserId,
        password: &str,
    ) -> Result<Option<AuthenticatedUser>, StoreError> {
        let (localpart, mxid) = (user_id.localpart(), user_id.as_str());
        // An empty password is an anonymous bind, which LDAP servers accept: never a login.
        if password.is_empty() {
            return Ok(None);
        }
        let value = if self.cfg.uid_is_mxid {
            mxid
        } else {
            localpart
        };
        let mut terms = format!("({}={})", self.cfg.uid_attribute, ldap_escape(value));
        if self.cfg.active_directory {
            terms.push_str(&format!("(sAMAccountName={})", ldap_escape(localpart)));
            if let Some(domain) = &self.cfg.default_domain {
                terms.push_str(&format!(
                    "(userPrincipalName={}@{})",
                    ldap_escape(localpart),
                    ldap_escape(domain.as_str())
                ));
            }
        }
        let filter = self.and(&self.cfg.auth_filter, &format!("(|{terms})"));
        let entries = self.search(&filter, &self.attributes())?;
        let Some((entry, user)) = entries.iter().find_map(|e| self.user(e).map(|u| (e, u))) else {
            return Ok(None);
        };
        if user.mxid != mxid {
            return Ok(None);
        }
        // The password is checked by binding as the user, on a connection of its own.
        let mut conn =
            LdapConn::with_settings(self.settings(), &self.cfg.url).map_err(|e| self.error(e))?;
        let bound = conn
            .with_timeout(self.cfg.timeout)
            .simple_bind(&entry.dn, password)
            .map_err(|e| self.error(e))?;
        let _ = conn.unbind();
        match bound.rc {
            0 => Ok(Some(AuthenticatedUser {
                mxid: user.mxid,
                display_name: user.display_name,
                threepids: user.threepids,
            })),
            49 => Ok(None), // invalidCredentials
            rc => Err(self.error(format!(
                "bind as {} answered {rc}: {}",
                entry.dn, bound.text
            ))),
        }
    }

    /// Lists, medium by medium, the addresses a single lookup would find: entries of the
    /// lookup filter and the medium's template (the token as `*`), each address kept if
    /// the template filled with it matches the entry.
    fn list(&self, sink: &mut dyn FnMut(Binding)) -> Option<Result<(), StoreError>> {
        if !self.cfg.listed {
            return None; // `ldap.identity.lookup: false`
        }
        let list_medium = |medium: Medium, template: &Template, sink: &mut dyn FnMut(Binding)| {
            let filter = self.and(&self.cfg.identity_filter, &template.listing);
            let mut attrs = self.attributes();
            attrs.extend(template.attributes.iter().cloned());
            self.search_paged(&filter, &attrs, &mut |entry| {
                let Some(user) = self.user(&entry) else {
                    return;
                };
                let values: Vec<(String, Vec<String>)> = entry.attrs.into_iter().collect();
                for (m, address) in user.threepids {
                    let found = m == medium
                        && asked_values(medium, &address)
                            .iter()
                            .any(|v| template.matches(&values, v));
                    if found {
                        sink(Binding {
                            medium,
                            address,
                            mxid: user.mxid.clone(),
                        });
                    }
                }
            })
        };
        Some(
            self.listing
                .iter()
                .try_for_each(|(medium, template)| list_medium(*medium, template, sink)),
        )
    }
}

/// The values a lookup of `address` asks for. Directories store phone numbers as written;
/// telephoneNumber matching ignores spaces and hyphens, so the international form is asked
/// with and without '+'.
fn asked_values(medium: Medium, address: &str) -> Vec<String> {
    match medium {
        Medium::Msisdn => vec![format!("+{address}"), address.to_owned()],
        Medium::Email => vec![address.to_owned()],
    }
}

/// The lookup template of each medium a lookup can find, for listing; a template that
/// cannot be evaluated here leaves its medium out of the hash index, said once at start.
fn listing_templates(
    cfg: &LdapConfig,
    threepid_attributes: &BTreeMap<Medium, Vec<String>>,
    medium_filters: &BTreeMap<Medium, String>,
) -> BTreeMap<Medium, Template> {
    let mut templates = BTreeMap::new();
    for (&medium, attrs) in threepid_attributes {
        // Active Directory compares phone numbers as plain strings.
        let phone = medium == Medium::Msisdn && !cfg.active_directory;
        let template = match medium_filters.get(&medium) {
            Some(filter) => match Template::parse(filter, &cfg.identity_token, phone) {
                Ok(t) => t,
                Err(e) => {
                    log::warn!("ldap.identity.medium.{medium}: {e}; this medium's addresses are not listed into the hash index, so sha256 lookups do not find them (single lookups and the 'none' algorithm do)");
                    continue;
                }
            },
            None => Template::of_attributes(attrs, phone),
        };
        templates.insert(medium, template);
    }
    templates
}

impl LdapStore {
    /// `check-config --connect`: a new connection bound with the configured DN (none: an
    /// anonymous one), then one base-scope search of each base DN, each within the store's
    /// timeout; what was done, or what failed and why.
    pub fn check(&self) -> Result<String, StoreError> {
        let mut conn = self.connect()?;
        let mut found = Vec::new();
        for base in &self.cfg.base_dns {
            conn.with_timeout(self.cfg.timeout)
                .search(base, Scope::Base, "(objectClass=*)", vec!["1.1"])
                .and_then(|r| r.success())
                .map_err(|e| self.error(format!("searching base DN {base}: {e}")))?;
            found.push(base.as_str());
        }
        let _ = conn.unbind();
        let bound = if self.cfg.bind_dn.is_empty() {
            "anonymous bind (no ldap.connection.bindDn)".to_owned()
        } else {
            format!("bound as {}", self.cfg.bind_dn)
        };
        Ok(format!(
            "{} at {}, base DNs found: {}",
            bound,
            self.cfg.url,
            found.join(", ")
        ))
    }
}

/// `filter` for the log: a control character (which `ldap_escape` lets through, and which
/// could forge a log line) written as RFC 4515's `\XX` escape: the same filter.
fn loggable_filter(filter: &str) -> String {
    let mut out = String::with_capacity(filter.len());
    for c in filter.chars() {
        if c.is_control() {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod log_tests {
    use super::loggable_filter;

    #[test]
    fn logged_filters_escape_control_characters() {
        assert_eq!(loggable_filter("(mail=a\nb@x.org)"), "(mail=a\\0ab@x.org)");
        assert_eq!(loggable_filter("(mail=é\\2a)"), "(mail=é\\2a)");
    }
}

/// The entries under `base` matching `filter` (see `LdapStore::search`: no adapter).
fn search_entries(
    conn: &mut LdapConn,
    base: &str,
    filter: &str,
    attrs: &[String],
) -> ldap3::result::Result<Vec<SearchEntry>> {
    let mut stream = conn.streaming_search(base, Scope::Subtree, filter, attrs.to_vec())?;
    let mut entries = Vec::new();
    while let Some(entry) = stream.next()? {
        // What ldap3's EntriesOnly adapter would leave out: referrals, intermediate messages.
        if !entry.is_ref() && !entry.is_intermediate() {
            entries.push(SearchEntry::construct(entry));
        }
    }
    stream.result().success()?;
    Ok(entries)
}

/// Against the test services' slapd (tests/services).
#[cfg(test)]
mod slapd_tests {
    use super::*;
    use crate::stores::IdentityStore;

    /// `KEY=value` of tests/services/config.sh.
    fn service(key: &str) -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/services/config.sh");
        let text = std::fs::read_to_string(path).expect("tests/services/config.sh");
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| panic!("{key} missing from config.sh"))
    }

    fn store() -> LdapStore {
        let yaml = format!(
            "matrix:\n  domain: example.org\nldap:\n  enabled: true\n  connection:\n    host: '127.0.0.1'\n    port: {}\n    bindDn: '{}'\n    bindPassword: '{}'\n    baseDNs: ['ou=people,{}']\n    timeout: 2\n  attribute:\n    uid:\n      value: uid\n",
            service("LDAP_PORT"),
            service("LDAP_ADMIN_DN"),
            service("LDAP_ADMIN_PASSWORD"),
            service("LDAP_BASE"),
        );
        let cfg = crate::config::load_str(&yaml, "test")
            .expect("config")
            .config;
        LdapStore::new(cfg.ldap.expect("ldap"), "example.org", None, 1).expect("store")
    }

    #[test]
    #[ignore = "needs root and the test services: bash tests/run.sh"]
    fn searches_leave_nothing_behind_on_their_connection() {
        let store = store();
        let mut conn = store.connect().expect("slapd answers");
        let base = format!("ou=people,{}", service("LDAP_BASE"));
        let filter = store
            .lookup_filter(Medium::Email, "user0042@example.org")
            .expect("mail");
        let mut search = || {
            let found = search_entries(&mut conn, &base, &filter, &store.attributes());
            assert_eq!(found.expect("slapd answers").len(), 1);
        };
        (0..10).for_each(|_| search());
        let before = crate::heap_count::held_here();
        (0..10_000).for_each(|_| search());
        let kept = crate::heap_count::held_here() - before;
        // Read through ldap3's `search` (an adapter), each search's message id stayed in the
        // connection: 10,000 ids held about 80 KB.
        assert!(kept < 8 * 1024, "10,000 searches kept {kept} bytes");
    }

    #[test]
    #[ignore = "needs root and the test services: bash tests/run.sh"]
    fn a_listing_does_not_keep_its_connection() {
        let store = store();
        let pooled = || {
            store
                .pool
                .with(|slot: &mut Option<LdapConn>| Ok::<_, StoreError>(slot.is_some()))
                .expect("the pool")
        };
        let find = || {
            store
                .find(Medium::Email, "user0042@example.org")
                .expect("slapd answers")
        };
        assert!(find().is_some());
        assert!(pooled(), "a lookup's connection is used again");
        let mut listed = 0;
        store
            .list(&mut |_| listed += 1)
            .expect("listing")
            .expect("slapd answers");
        assert!(listed > 2000, "{listed}");
        // Paging needs an adapter, which leaves each page's message id in the connection.
        assert!(!pooled(), "the listing's connection was put back");
        assert!(find().is_some());
        assert!(pooled());
    }
}
