//! The lookup chain: 3PID → Matrix ID, asking sources from the most to the least
//! authoritative (identity stores, then other identity servers). Knows no HTTP.
//!
//! No source is wired in yet: with none configured every lookup finds nothing, which is
//! what a server without identity stores answers.

#[derive(Default)]
pub struct Chain {}

impl Chain {
    pub fn new() -> Chain {
        Chain {}
    }

    /// The Matrix ID bound to this 3PID, if a source knows one.
    pub fn find(&self, _medium: &str, _address: &str) -> Option<String> {
        None
    }
}
