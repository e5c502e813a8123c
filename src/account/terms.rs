//! The terms of service users must accept (ma1sd's `policy.policies`): each policy has a
//! version and one document per language. Accepting any language's URL of a policy's current
//! version accepts that policy (as the spec and sydent say); a new version has new URLs and
//! so asks again.

use crate::config::PolicyConfig;
use serde_json::{json, Map, Value};

pub struct Terms {
    policies: Vec<PolicyConfig>,
}

impl Terms {
    pub fn new(policies: Vec<PolicyConfig>) -> Terms {
        Terms { policies }
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// `GET /terms`: `{"policies":{name:{"version":…, lang:{"name":…,"url":…}}}}`.
    pub fn to_json(&self) -> Value {
        let mut policies = Map::new();
        for p in &self.policies {
            let mut doc = Map::new();
            doc.insert("version".into(), json!(p.version));
            for (lang, name, url) in &p.terms {
                doc.insert(lang.clone(), json!({ "name": name, "url": url }));
            }
            policies.insert(p.name.clone(), Value::Object(doc));
        }
        json!({ "policies": policies })
    }

    pub fn knows_url(&self, url: &str) -> bool {
        self.policies
            .iter()
            .any(|p| p.terms.iter().any(|(_, _, u)| u == url))
    }

    /// Whether `accepted` holds a URL of every policy.
    pub fn all_accepted(&self, accepted: &[String]) -> bool {
        self.policies.iter().all(|p| {
            p.terms
                .iter()
                .any(|(_, _, url)| accepted.iter().any(|a| a == url))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, version: &str, urls: &[&str]) -> PolicyConfig {
        PolicyConfig {
            name: name.into(),
            version: version.into(),
            terms: urls
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("l{i}"), name.to_owned(), u.to_string()))
                .collect(),
        }
    }

    #[test]
    fn any_language_accepts_a_policy_and_every_policy_is_needed() {
        let terms = Terms::new(vec![
            policy("privacy", "1", &["https/p/en", "https/p/fr"]),
            policy("tos", "2", &["https/t2"]),
        ]);
        assert!(!terms.all_accepted(&[]));
        assert!(!terms.all_accepted(&["https/p/fr".into()]));
        assert!(terms.all_accepted(&["https/p/fr".into(), "https/t2".into()]));
        assert!(!terms.all_accepted(&["https/p/fr".into(), "https/t1".into()]));
        assert!(terms.knows_url("https/t2") && !terms.knows_url("https/t1"));
        assert_eq!(terms.to_json()["policies"]["tos"]["version"], "2");
        assert_eq!(
            terms.to_json()["policies"]["privacy"]["l1"]["url"],
            "https/p/fr"
        );
    }
}
