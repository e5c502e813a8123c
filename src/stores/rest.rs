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

use super::{find_one_by_one, AuthenticatedUser, Binding, IdentityStore, StoreError};
use crate::config::RestConfig;
use crate::federation::ConfiguredClient;
use crate::threepid::{self, Medium};
use crate::user_id::UserId;
use serde_json::{json, Value};

pub struct RestStore {
    cfg: RestConfig,
    domain: String,
    region: Option<phonenumber::country::Id>,
    client: ConfiguredClient,
}

impl RestStore {
    /// The store of `cfg`, called through `client` (the outbound module's client for
    /// configured destinations, with `rest.timeout`).
    pub fn new(
        cfg: RestConfig,
        domain: &str,
        region: Option<phonenumber::country::Id>,
        client: ConfiguredClient,
    ) -> RestStore {
        RestStore {
            cfg,
            domain: domain.to_owned(),
            region,
            client,
        }
    }

    fn post(&self, url: &str, body: &Value) -> Result<Value, StoreError> {
        let answer = self
            .client
            .post_json(url, body)
            .map_err(|e| self.error(format!("{url}: {e}")))?;
        if answer.status != 200 {
            return Err(self.error(format!("{url} answered HTTP {}", answer.status)));
        }
        answer.json().map_err(|e| self.error(format!("{url}: {e}")))
    }

    /// A 3PID the backend gave, normalised; `None` if it is not one.
    fn threepid(&self, medium: &str, address: &str) -> Option<(Medium, String)> {
        let medium = Medium::parse(medium)?;
        Some((medium, threepid::address(medium, address, self.region)?))
    }

    /// `{"type":"mxid"|"localpart","value":…}` → a Matrix ID.
    fn mxid(&self, id: &Value) -> Option<String> {
        let value = id.get("value")?.as_str()?;
        match id.get("type").and_then(Value::as_str) {
            Some("localpart") => Some(UserId::of(value, &self.domain).into_string()),
            _ => Some(value.to_owned()),
        }
    }
}

impl IdentityStore for RestStore {
    fn name(&self) -> &str {
        "rest"
    }

    fn find(&self, medium: Medium, address: &str) -> Result<Option<String>, StoreError> {
        let body = json!({"lookup": {"medium": medium.as_str(), "address": address}});
        // Lookups only: a login's body holds a password.
        log::debug!("rest: POST {} {body}", self.cfg.single_url);
        let answer = self.post(&self.cfg.single_url, &body)?;
        Ok(answer
            .get("lookup")
            .and_then(|l| l.get("id"))
            .and_then(|id| self.mxid(id)))
    }

    fn find_many(&self, threepids: &[(Medium, String)]) -> Result<Vec<Binding>, StoreError> {
        let Some(bulk_url) = &self.cfg.bulk_url else {
            return find_one_by_one(self, threepids);
        };
        let asked: Vec<Value> = threepids
            .iter()
            .map(|(m, a)| json!({"medium": m.as_str(), "address": a}))
            .collect();
        log::debug!("rest: POST {bulk_url} ({} addresses)", threepids.len());
        let answer = self.post(bulk_url, &json!({ "lookup": asked }))?;
        let found = answer
            .get("lookup")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // The backend's addresses are normalised as ours are, or the chain would not
        // recognise them as the ones it asked for.
        Ok(found
            .iter()
            .filter_map(|item| {
                let (medium, address) = self.threepid(
                    item.get("medium")?.as_str()?,
                    item.get("address")?.as_str()?,
                )?;
                Some(Binding {
                    medium,
                    address,
                    mxid: self.mxid(item.get("id")?)?,
                })
            })
            .collect())
    }

    fn authenticate(
        &self,
        user_id: &UserId,
        password: &str,
    ) -> Result<Option<AuthenticatedUser>, StoreError> {
        let (localpart, mxid) = (user_id.localpart(), user_id.as_str());
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
                        self.threepid(t.get("medium")?.as_str()?, t.get("address")?.as_str()?)
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
