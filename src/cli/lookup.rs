//! `mxisd lookup -c FILE <medium> <address>`: the lookup chain of the configuration run
//! once, as a lookup mxisd makes itself (`Asker::Server`: other identity servers are asked
//! when `lookup.recursive.enabled`). Each step is a log line (the chain's and the stores'
//! debug lines: store, filter or query with the values escaped, time, result; with `-v`
//! the outbound calls too); the answer is what this returns.
//!
//! The binds made on this server (`binds.local`) live in the state database and are not
//! asked: this command opens no state.

use crate::config::Config;
use crate::lookup::{Asker, Chain};
use crate::threepid::Medium;

/// What the chain answered.
pub enum Answer {
    Found { address: String, mxid: String },
    NotFound { address: Option<String> },
}

/// Runs the chain once for `medium` `address`.
pub fn run(config: &Config, medium: &str, address: &str) -> Result<Answer, String> {
    let medium = Medium::parse(medium)
        .ok_or_else(|| format!("'{medium}' is not a medium (email, msisdn)"))?;
    let mut chain = Chain::from_config(config)?;
    if config.lookup.recursive.enabled {
        let client = crate::federation::Client::new(&config.federation)?;
        chain = chain.with_remote(config, client);
        log::info!(
            "lookup.recursive.enabled: after a local miss, other identity servers are asked (DNS discovery, then forward.servers)"
        );
    } else {
        log::info!("lookup.recursive.enabled is false: only the local stores are asked");
    }
    let normalised = crate::threepid::address(medium, address, config.lookup.default_region);
    match &normalised {
        Some(n) => log::info!("{medium} {address:?} is asked as {n:?}"),
        None => log::info!("{medium} {address:?} is not a valid address: nobody is asked"),
    }
    match chain.find_signed(Asker::Server, medium, address) {
        Ok(Some((address, found))) => Ok(Answer::Found {
            address,
            mxid: found.mxid,
        }),
        Ok(None) => Ok(Answer::NotFound {
            address: normalised,
        }),
        Err(e) => Err(e.to_string()),
    }
}
