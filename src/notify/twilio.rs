//! The `twilio` connector: SMS through Twilio's Messages API (`POST
//! /2010-04-01/Accounts/{sid}/Messages.json`, a form with `To`, `From`, `Body`, HTTP basic
//! authentication), over the client for configured destinations (its TLS settings and
//! timeouts; `baseUrl` may point at another server speaking the same API).

use super::{Connector, NotifyError};
use crate::config::{FederationConfig, TwilioConfig};
use crate::federation::client::ConfiguredClient;
use std::time::Duration;

pub struct Twilio {
    cfg: TwilioConfig,
    client: ConfiguredClient,
}

impl Twilio {
    pub fn new(cfg: &TwilioConfig, federation: &FederationConfig) -> Result<Twilio, String> {
        Ok(Twilio {
            cfg: cfg.clone(),
            client: ConfiguredClient::new(federation, federation.timeout)?,
        })
    }
}

impl Connector for Twilio {
    /// `to` is E.164 without `+` (as 3PIDs are kept); Twilio wants the `+`.
    fn send(&self, to: &str, message: &str) -> Result<(), NotifyError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.cfg.base_url,
            crate::urlencoded::encode(&self.cfg.account_sid)
        );
        let to = format!("+{}", to.trim_start_matches('+'));
        let answer = self
            .client
            .post_form(
                &url,
                &[("To", &to), ("From", &self.cfg.number), ("Body", message)],
                (&self.cfg.account_sid, &self.cfg.auth_token),
            )
            .map_err(|e| NotifyError::Send(format!("Twilio: {e}")))?;
        match answer.status {
            200..=299 => Ok(()),
            status => Err(NotifyError::Send(format!(
                "Twilio answered {status}: {}",
                answer.body.chars().take(300).collect::<String>()
            ))),
        }
    }

    /// One call.
    fn longest_send(&self) -> Duration {
        self.client.longest_call()
    }
}
