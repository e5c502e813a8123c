//! `invite`: invites by e-mail (store-invite): how long they live, the abuse limits, who may
//! use the unauthenticated v1 endpoint, and the web client the mail links to. mxisd's older
//! sender keys (`invite.sender.email`) configure the e-mail connector (`threepid.rs`).

use super::check::Resolver;
use super::session::Limit;
use crate::cidr::Cidr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct InviteConfig {
    /// `invite.expiration.{enabled, after}` (after in minutes, default a week).
    pub expiration: Option<Duration>,
    pub per_sender: Limit,
    pub per_address: Limit,
    /// Who may call the v1 store-invite (no account: an open mail relay otherwise).
    pub v1_allowed: Vec<Cidr>,
    /// The web client the mail's join link opens (Element's URL form).
    pub client_url: String,
    /// How often pending invites are looked up in the identity stores
    /// (`invite.resolution.{timer, period}`: 5 minutes by default).
    pub resolution: Duration,
    /// `invite.resolution.recursive` (mxisd's default: true): resolution asks other identity
    /// servers too (when `lookup.recursive.enabled`), whoever sent the invite.
    pub resolution_recursive: bool,
    /// Retries of invite mails and onbind calls: the first wait, doubling up to the last
    /// (`invite.retry.{first, max}`, seconds: 30 and 3,600).
    pub retry: (Duration, Duration),
}

impl Resolver<'_> {
    pub(super) fn invite(&mut self, i: &raw::Invite) -> Result<InviteConfig, String> {
        if i.policy.is_some() {
            return Err(self.refused(
                "invite.policy",
                "who may invite (ifSender.hasRole) would not be checked and everyone could invite",
            ));
        }
        self.unsupported("invite", &i.unsupported()); // `policy` is refused above
        let expiration = i.expiration.as_ref();
        if let Some(e) = expiration {
            self.unsupported("invite.expiration", &e.unsupported());
        }
        let enabled = expiration.and_then(|e| e.enabled).unwrap_or(true);
        // Minutes, as mxisd's; a fraction is taken too (tests expire invites in seconds).
        let after = expiration.and_then(|e| e.after).unwrap_or(10_080.0);
        if enabled && !(1.0 / 60.0..=1e9).contains(&after) {
            return Err(self.at(
                "invite.expiration.after",
                format!("{after} minutes: give at least a second (0.017), or enabled: false"),
            ));
        }
        let limits = i.rate_limit.as_ref();
        let v1_allowed = match i.v1.as_ref().and_then(|v| v.allowed_cidr.clone()) {
            Some(list) => self.cidrs("invite.v1.allowedCidr", Some(list))?,
            None => [
                "127.0.0.0/8",
                "::1/128",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "fc00::/7",
            ]
            .iter()
            .map(|c| c.parse())
            .collect::<Result<_, _>>()?,
        };
        let client_url = i
            .client_url
            .clone()
            .unwrap_or_else(|| "https://app.element.io".into())
            .trim_end_matches('/')
            .to_owned();
        self.http_url("invite.clientUrl", &client_url)?;
        let resolution = i.resolution.as_ref();
        let timer = resolution.and_then(|r| r.timer).unwrap_or(5).max(1);
        let unit = match resolution.and_then(|r| r.period.as_deref()) {
            None | Some("minutes") => 60,
            Some("seconds") => 1,
            Some("hours") => 3600,
            Some(other) => {
                return Err(self.at(
                    "invite.resolution.period",
                    format!("'{other}' is not seconds, minutes or hours"),
                ))
            }
        };
        let retry = i.retry.as_ref();
        let first = self.seconds(
            "invite.retry.first",
            retry.and_then(|r| r.first),
            30,
            86_400,
        )?;
        let max = self.seconds(
            "invite.retry.max",
            retry.and_then(|r| r.max),
            3_600,
            7 * 86_400,
        )?;
        Ok(InviteConfig {
            retry: (first, max.max(first)),
            resolution: Duration::from_secs(timer * unit),
            resolution_recursive: resolution.and_then(|r| r.recursive).unwrap_or(true),
            expiration: enabled.then(|| Duration::from_secs_f64(after * 60.0)),
            per_sender: Limit::written(limits.and_then(|l| l.per_sender.as_ref()), 10, 10),
            per_address: Limit::written(limits.and_then(|l| l.per_address.as_ref()), 3, 1),
            v1_allowed,
            client_url,
        })
    }
}

/// `invite` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        Invite {
            sender: InviteSender = "sender",
            expiration: Expiration = "expiration",
            rate_limit: RateLimit = "rateLimit",
            v1: V1 = "v1",
            client_url: String = "clientUrl",
            resolution: Resolution = "resolution",
            retry: Retry = "retry",
        } unsupported {
            policy = "policy",
        }
    }
    section! {
        /// Ours: how invite mails and onbind calls are retried.
        Retry {
            first: u64 = "first",
            max: u64 = "max",
        }
    }
    section! {
        Resolution {
            timer: u64 = "timer",
            period: String = "period",
            recursive: bool = "recursive",
        }
    }
    section! {
        InviteSender {
            email: crate::config::threepid::raw::OldSender = "email",
        }
    }
    section! {
        Expiration {
            enabled: bool = "enabled",
            after: f64 = "after",
        } unsupported {
            resolve_to = "resolveTo",
        }
    }
    section! {
        RateLimit {
            per_sender: crate::config::session::raw::Limit = "perSender",
            per_address: crate::config::session::raw::Limit = "perAddress",
        }
    }
    section! {
        V1 {
            allowed_cidr: Vec<String> = "allowedCidr",
        }
    }
}
