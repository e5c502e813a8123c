//! mxisd's `notification`: which handler sends each medium's notifications. `raw` is what
//! this version does (its connectors, `threepid.rs`); another handler (`sendgrid`) is refused
//! at start, since ignoring it would make every validation fail at run time.

use super::check::Resolver;

impl Resolver<'_> {
    pub(super) fn notification(&mut self, n: Option<raw::Notification>) -> Result<(), String> {
        let Some(n) = n else { return Ok(()) };
        for (medium, handler) in n.handler.iter().flatten() {
            if handler != "raw" {
                return Err(self.refused(
                    &format!("notification.handler.{medium}"),
                    &format!("the '{handler}' handler is not built in, so every notification by {medium} would fail (only 'raw': the connectors of threepid.medium.{medium})"),
                ));
            }
        }
        // The handlers' settings (sendgrid's key, ...) are unused with `raw`.
        self.unsupported("notification", &n.unsupported());
        Ok(())
    }
}

/// `notification` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        Notification {
            handler: std::collections::BTreeMap<String, String> = "handler",
        } unsupported {
            handlers = "handlers",
        }
    }
}
