//! The commands besides running the server, for operators: what `check-config` checks
//! beyond parsing (`paths`: can the service user read and write its files; `connect`:
//! does every configured backend answer) and `mxisd lookup` (`lookup`: the chain run once,
//! each step logged). Builds what it needs from the configuration as `app` does, and
//! serves no request.

pub mod connect;
pub mod lookup;
pub mod paths;
