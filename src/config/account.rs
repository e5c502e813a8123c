//! `account` and `policy`: who may register for v2, and the terms users must accept
//! (ma1sd's `policy.policies`).

use super::check::Resolver;

#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// Homeserver names allowed to register; empty: any.
    pub homeserver_allow_list: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    pub name: String,
    pub version: String,
    /// (language, document name, URL)
    pub terms: Vec<(String, String, String)>,
}

impl Resolver<'_> {
    /// ma1sd's `accountConfig.allowOnlyTrustDomains: true` (only users of `matrix.domain`
    /// register) is our allow list of that one domain: ignoring it would let in the users
    /// the operator kept out.
    pub(super) fn account(
        &mut self,
        a: raw::Account,
        ma1sd: Option<raw::AccountConfig>,
        domain: &str,
    ) -> Result<AccountConfig, String> {
        let trusted_only = ma1sd.and_then(|c| c.allow_only_trust_domains) == Some(true);
        let homeserver_allow_list = match (a.homeserver_allow_list, trusted_only) {
            (Some(_), true) => {
                return Err(self.at(
                    "accountConfig.allowOnlyTrustDomains",
                    "and `account.homeserverAllowList` both say who may register: keep one",
                ))
            }
            (Some(list), false) => list,
            (None, true) => vec![domain.to_owned()],
            (None, false) => Vec::new(),
        };
        Ok(AccountConfig {
            homeserver_allow_list,
        })
    }

    pub(super) fn policies(&mut self, p: raw::Policy) -> Result<Vec<PolicyConfig>, String> {
        let mut policies = Vec::new();
        for (name, doc) in p.policies.unwrap_or_default() {
            let path = format!("policy.policies.{name}");
            for key in doc.unsupported() {
                self.unsupported(&path, &[key]);
            }
            let version = self
                .non_empty(&format!("{path}.version"), doc.version)?
                .ok_or_else(|| self.required(&format!("{path}.version"), ""))?;
            let mut terms = Vec::new();
            for (lang, t) in doc.terms.unwrap_or_default() {
                let at = format!("{path}.terms.{lang}");
                let url = self
                    .non_empty(&format!("{at}.url"), t.url)?
                    .ok_or_else(|| self.required(&format!("{at}.url"), ""))?;
                let title = t.name.unwrap_or_else(|| name.clone());
                terms.push((lang, title, url));
            }
            if terms.is_empty() {
                return Err(self.required(
                    &format!("{path}.terms"),
                    ": at least one language with a name and url",
                ));
            }
            policies.push(PolicyConfig {
                name,
                version,
                terms,
            });
        }
        Ok(policies)
    }
}

/// `account` and `policy` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        /// v2 accounts (new in this implementation).
        Account {
            homeserver_allow_list: Vec<String> = "homeserverAllowList",
        }
    }
    /// ma1sd's `accountConfig`.
    #[derive(serde::Deserialize, Default, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct AccountConfig {
        #[serde(rename = "allowOnlyTrustDomains")]
        pub allow_only_trust_domains: Option<bool>,
    }
    section! {
        /// ma1sd's terms of service.
        Policy {
            policies: std::collections::BTreeMap<String, PolicyDocument> = "policies",
        }
    }
    section! {
        PolicyDocument {
            version: String = "version",
            terms: std::collections::BTreeMap<String, PolicyTerms> = "terms",
        } unsupported {
            regexp = "regexp",
        }
    }
    section! {
        PolicyTerms {
            name: String = "name",
            url: String = "url",
        }
    }
}
