//! Lookups: 3PID → Matrix ID, answered by the lookup chain.

use crate::app::App;
use crate::http::{ApiError, Reply, Request};
use serde::Deserialize;
use serde_json::json;

/// # `GET /_matrix/identity/api/v1/lookup?medium=…&address=…`
///
/// The signed association of one 3PID, or `{}` when no source knows it.
pub fn lookup_v1(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let medium = req.require_query("medium")?;
    let address = req.require_query("address")?;
    match app.lookup.find(medium, address) {
        None => Ok(Reply::json(json!({}))),
        Some(mxid) => {
            // mxisd's validity window: a minute back (clock skew), five minutes ahead.
            let ts = now_ms();
            let mut association = json!({
                "medium": medium, "address": address, "mxid": mxid,
                "ts": ts, "not_before": ts - 60_000, "not_after": ts + 300_000,
            });
            app.keys
                .sign(&app.config.server.name, &mut association)
                .map_err(|e| {
                    log::error!("signing a lookup answer: {e}");
                    ApiError::Internal
                })?;
            Ok(Reply::json(association))
        }
    }
}

#[derive(Deserialize)]
struct BulkLookup {
    threepids: Vec<(String, String)>,
}

/// # `POST /_matrix/identity/api/v1/bulk_lookup`
///
/// `{"threepids":[[medium,address],…]}` → `{"threepids":[[medium,address,mxid],…]}`, only
/// the 3PIDs that were found, unsigned (as in the spec).
pub fn bulk_lookup_v1(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let body: BulkLookup = req.json()?;
    let found: Vec<[String; 3]> = body
        .threepids
        .into_iter()
        .filter_map(|(medium, address)| {
            let mxid = app.lookup.find(&medium, &address)?;
            Some([medium, address, mxid])
        })
        .collect();
    Ok(Reply::json(json!({ "threepids": found })))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
