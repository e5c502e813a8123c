//! mxisd's REST identity store (`rest.*`): an operator's own backend answering mxisd's wire
//! format over HTTP(S).
//!
//! - Single: `{"lookup":{"medium","address"}}` → `{"lookup":{…,"id":{"type","value"}}}` or `{}`.
//! - Bulk: `{"lookup":[{"medium","address"},…]}` → `{"lookup":[{…,"id":{…}},…]}`.
//! - Auth: `{"auth":{"mxid","localpart","domain","password"}}` → `{"auth":{"success",
//!   "id":{"type","value"},"profile":{"display_name","three_pids":[{"medium","address"}]}}}`.
//!
//! The backend is the operator's (not a name from a request), so the outbound address
//! policy does not apply; every call has the `rest.timeout`. It cannot list, so it answers
//! v2 lookups only for the `none` algorithm. Without a bulk endpoint (`identity.bulk` left
//! empty), bulk lookups ask the single endpoint for each address.

use super::{AuthenticatedUser, BackendError, Binding, IdentityStore};
use crate::config::RestConfig;
use serde_json::{json, Value};

pub struct RestStore {
    cfg: RestConfig,
    domain: String,
    agent: ureq::Agent,
}

impl RestStore {
    pub fn new(cfg: RestConfig, domain: &str) -> RestStore {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(cfg.timeout))
            .user_agent(concat!("mxisd/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        RestStore {
            cfg,
            domain: domain.to_owned(),
            agent,
        }
    }

    fn error(&self, reason: impl std::fmt::Display) -> BackendError {
        BackendError {
            store: self.name().into(),
            reason: reason.to_string(),
        }
    }

    fn post(&self, url: &str, body: &Value) -> Result<Value, BackendError> {
        let mut answer = self
            .agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .map_err(|e| self.error(format!("{url}: {e}")))?;
        let status = answer.status().as_u16();
        let text = answer
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .map_err(|e| self.error(e))?;
        if status != 200 {
            return Err(self.error(format!("{url} answered HTTP {status}")));
        }
        serde_json::from_str(&text).map_err(|e| self.error(format!("{url}: not JSON ({e})")))
    }

    /// `{"type":"mxid"|"localpart","value":…}` → a Matrix ID.
    fn mxid(&self, id: &Value) -> Option<String> {
        let value = id.get("value")?.as_str()?;
        match id.get("type").and_then(Value::as_str) {
            Some("localpart") => Some(format!("@{value}:{}", self.domain)),
            _ => Some(value.to_owned()),
        }
    }
}

impl IdentityStore for RestStore {
    fn name(&self) -> &str {
        "rest"
    }

    fn find(&self, medium: &str, address: &str) -> Result<Option<String>, BackendError> {
        let answer = self.post(
            &self.cfg.single_url,
            &json!({"lookup": {"medium": medium, "address": address}}),
        )?;
        Ok(answer
            .get("lookup")
            .and_then(|l| l.get("id"))
            .and_then(|id| self.mxid(id)))
    }

    fn find_many(&self, threepids: &[(String, String)]) -> Result<Vec<Binding>, BackendError> {
        let Some(bulk_url) = &self.cfg.bulk_url else {
            let mut found = Vec::new();
            for (medium, address) in threepids {
                if let Some(mxid) = self.find(medium, address)? {
                    found.push(Binding {
                        medium: medium.clone(),
                        address: address.clone(),
                        mxid,
                    });
                }
            }
            return Ok(found);
        };
        let asked: Vec<Value> = threepids
            .iter()
            .map(|(m, a)| json!({"medium": m, "address": a}))
            .collect();
        let answer = self.post(bulk_url, &json!({ "lookup": asked }))?;
        let found = answer
            .get("lookup")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(found
            .iter()
            .filter_map(|item| {
                Some(Binding {
                    medium: item.get("medium")?.as_str()?.to_owned(),
                    address: item.get("address")?.as_str()?.to_owned(),
                    mxid: self.mxid(item.get("id")?)?,
                })
            })
            .collect())
    }

    fn authenticate(
        &self,
        localpart: &str,
        mxid: &str,
        password: &str,
    ) -> Result<Option<AuthenticatedUser>, BackendError> {
        let body = json!({"auth": {"mxid": mxid, "localpart": localpart, "domain": self.domain, "password": password}});
        let answer = self.post(&self.cfg.auth_url, &body)?;
        let auth = answer.get("auth").cloned().unwrap_or_default();
        if auth.get("success").and_then(Value::as_bool) != Some(true) {
            return Ok(None);
        }
        let profile = auth.get("profile").cloned().unwrap_or_default();
        let threepids = profile
            .get("three_pids")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|t| {
                        Some((
                            t.get("medium")?.as_str()?.to_owned(),
                            t.get("address")?.as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(AuthenticatedUser {
            mxid: auth
                .get("id")
                .and_then(|id| self.mxid(id))
                .unwrap_or_else(|| mxid.to_owned()),
            display_name: profile
                .get("display_name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            threepids,
        }))
    }
}
