//! Notifications to a 3PID: a generator writes the message (`template`: mxisd's template
//! files), a connector sends it (`smtp` for e-mail, `twilio` for SMS). Both are chosen per
//! medium (`threepid.medium.<medium>`). Knows no HTTP requests and no state.
//!
//! What a request's worker sends (validation messages, unbind notices) passes a gate of
//! `http.connectorWorkers` places: a stalled relay holds at most that many workers, and a
//! send past them fails at once (`Busy`) instead of waiting. Invite mails are sent by a job,
//! not a worker, and do not pass it.

pub(crate) mod lines;
pub mod smtp;
pub mod template;
pub mod twilio;

use crate::config::{Config, EmailConfig, FederationConfig, MsisdnConfig, Templates};
use crate::gate::{Gate, Pass};
use crate::logging::Throttled;
use crate::metrics::Connector as Sender;
use crate::threepid::Medium;
use std::fmt;
use std::time::Duration;
use template::{Placeholders, TemplateError};

/// What a validation message says.
pub struct Validation<'a> {
    pub address: &'a str,
    pub token: &'a str,
    /// The link that submits the token (e-mail).
    pub link: &'a str,
    pub next_url: &'a str,
}

/// Writes the message of one kind of notification for one medium.
pub trait Generator: Send + Sync {
    fn validation(&self, v: &Validation<'_>) -> Result<String, NotifyError>;
    /// The notice that `address` is no longer bound to `mxid` (mxisd's `unbind-fraudulent`).
    fn unbind_notice(&self, address: &str, mxid: &str) -> Result<String, NotifyError>;
    /// The invite to a room sent to `address`, with the invite's own placeholders.
    fn invite(&self, address: &str, values: &Placeholders) -> Result<String, NotifyError>;
}

/// Sends a message (as its generator wrote it) to an address.
pub trait Connector: Send + Sync {
    fn send(&self, to: &str, message: &str) -> Result<(), NotifyError>;
    /// The longest `send` can take under this connector's deadlines: what holds a send
    /// (an invite mail's queue lease, a session resend's reservation) lasts this long.
    fn longest_send(&self) -> Duration;
}

#[derive(Debug)]
pub enum NotifyError {
    /// No connector configured for this medium: names the config key.
    NotConfigured(&'static str),
    Template(TemplateError),
    /// The connector failed: says why (for the log, never for the client). Worth trying
    /// again (a connection error, a 4xx).
    Send(String),
    /// The server refused the message for good (a 5xx to RCPT or DATA, but for those an
    /// operator cures: 530, a 5.7.x or 552 to RCPT): trying again cannot help.
    Refused(String),
    /// Every place of the connector gate is taken (`http.connectorWorkers`): not tried.
    Busy,
}

impl NotifyError {
    /// Whether no retry can cure it: a template that cannot be filled, a refusal for good.
    pub fn is_permanent(&self) -> bool {
        matches!(self, NotifyError::Template(_) | NotifyError::Refused(_))
    }
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::NotConfigured(key) => write!(f, "no connector configured ({key})"),
            NotifyError::Template(e) => write!(f, "template: {e}"),
            NotifyError::Send(why) => write!(f, "sending failed: {why}"),
            NotifyError::Refused(why) => write!(f, "refused for good: {why}"),
            NotifyError::Busy => f.write_str(
                "every worker the connectors may hold is waiting on one (http.connectorWorkers)",
            ),
        }
    }
}

impl std::error::Error for NotifyError {}

impl From<TemplateError> for NotifyError {
    fn from(e: TemplateError) -> Self {
        NotifyError::Template(e)
    }
}

/// A generator and a connector.
pub struct Channel {
    pub generator: Box<dyn Generator>,
    pub connector: Box<dyn Connector>,
}

/// The channels of every medium.
pub struct Notifier {
    email: Option<Channel>,
    msisdn: Option<Channel>,
    /// The workers that may wait on a connector at once (`http.connectorWorkers`).
    gate: Gate,
    /// The warning that the gate refused a send.
    busy_log: Throttled,
}

/// At most one line per this long says that the gate refuses sends.
const BUSY_LOG_EVERY: Duration = Duration::from_secs(10);

impl Notifier {
    pub fn from_config(config: &Config) -> Result<Notifier, String> {
        let domain = &config.matrix.domain;
        Ok(Notifier {
            email: email_channel(&config.threepid.email, domain)?,
            msisdn: sms_channel(&config.threepid.msisdn, &config.federation, domain)?,
            gate: Gate::new(config.http.connector_workers),
            busy_log: Throttled::new(BUSY_LOG_EVERY),
        })
    }

    /// Sends the validation message for `v` to `v.address` over `medium`'s channel, from a
    /// request's worker: through the gate.
    pub fn validation(&self, medium: Medium, v: &Validation<'_>) -> Result<(), NotifyError> {
        let channel = self.channel(medium)?;
        let message = channel.generator.validation(v)?;
        let _pass = self.enter(medium)?;
        channel.connector.send(v.address, &message)
    }

    /// Tells `address` that it is no longer bound to `mxid` (from a request's worker:
    /// through the gate).
    pub fn unbind_notice(
        &self,
        medium: Medium,
        address: &str,
        mxid: &str,
    ) -> Result<(), NotifyError> {
        let channel = self.channel(medium)?;
        let message = channel.generator.unbind_notice(address, mxid)?;
        let _pass = self.enter(medium)?;
        channel.connector.send(address, &message)
    }

    /// A place in the connector gate, or `Busy` (logged: the operator sees a relay that
    /// holds its share of the workers; at most a line per `BUSY_LOG_EVERY`, as a stalled
    /// relay under load refuses thousands of requests).
    fn enter(&self, medium: Medium) -> Result<Pass<'_>, NotifyError> {
        self.gate.try_enter().ok_or_else(|| {
            if let Some(refused) = self.busy_log.hit(std::time::Instant::now()) {
                log::warn!(
                    "{medium} not sent: {} workers already wait on the mail and SMS connectors (http.connectorWorkers); {refused} sends refused since the last such line (at most one every {} s)",
                    self.gate.max(),
                    BUSY_LOG_EVERY.as_secs()
                );
            }
            NotifyError::Busy
        })
    }

    /// Sends `address` its invite (from the delivery job, not a worker: no gate).
    pub fn invite(
        &self,
        medium: Medium,
        address: &str,
        values: &Placeholders,
    ) -> Result<(), NotifyError> {
        let channel = self.channel(medium)?;
        let message = channel.generator.invite(address, values)?;
        channel.connector.send(address, &message)
    }

    /// The longest a send over `medium`'s connector can take (none configured: no send).
    pub fn longest_send(&self, medium: Medium) -> Duration {
        self.channel(medium)
            .map_or(Duration::ZERO, |c| c.connector.longest_send())
    }

    fn channel(&self, medium: Medium) -> Result<&Channel, NotifyError> {
        match medium {
            Medium::Email => self.email.as_ref().ok_or(NotifyError::NotConfigured(
                "threepid.medium.email.connectors.smtp",
            )),
            Medium::Msisdn => self.msisdn.as_ref().ok_or(NotifyError::NotConfigured(
                "threepid.medium.msisdn.connectors.twilio",
            )),
        }
    }
}

fn email_channel(cfg: &EmailConfig, domain: &str) -> Result<Option<Channel>, String> {
    let Some(smtp) = &cfg.smtp else {
        return Ok(None);
    };
    Ok(Some(Channel {
        generator: Box::new(TemplateGenerator::new(
            Kind::Email,
            &cfg.templates,
            base_placeholders(domain, &cfg.from, &cfg.name, &cfg.templates),
            domain,
        )?),
        connector: Box::new(Counted(Sender::Smtp, smtp::Smtp::new(smtp, &cfg.from)?)),
    }))
}

fn sms_channel(
    cfg: &MsisdnConfig,
    federation: &FederationConfig,
    domain: &str,
) -> Result<Option<Channel>, String> {
    let Some(twilio) = &cfg.twilio else {
        return Ok(None);
    };
    Ok(Some(Channel {
        generator: Box::new(TemplateGenerator::new(
            Kind::Sms,
            &cfg.templates,
            base_placeholders(domain, "", "", &cfg.templates),
            domain,
        )?),
        connector: Box::new(Counted(
            Sender::Twilio,
            twilio::Twilio::new(twilio, federation)?,
        )),
    }))
}

/// mxisd's `%DOMAIN_PRETTY%`: the domain with its first letter upper case.
pub fn domain_pretty(domain: &str) -> String {
    let mut pretty = domain.to_owned();
    if let Some(first) = pretty.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    pretty
}

/// The placeholders of every message: mxisd's `DOMAIN`, `DOMAIN_PRETTY`, `FROM_EMAIL`,
/// `FROM_NAME`, and the operator's static ones (`placeholder`).
fn base_placeholders(domain: &str, from: &str, name: &str, t: &Templates) -> Placeholders {
    let mut p = Placeholders::new();
    p.set("DOMAIN", domain)
        .set("DOMAIN_PRETTY", domain_pretty(domain))
        .set("FROM_EMAIL", from)
        .set("FROM_NAME", name);
    for (k, v) in &t.placeholders {
        p.set(k, v.clone());
    }
    p
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Email,
    Sms,
}

/// mxisd's `template` generator: the operator's files, else ours (`etc/templates/`,
/// built in).
struct TemplateGenerator {
    kind: Kind,
    validation: String,
    unbind_notice: String,
    invite: String,
    base: Placeholders,
    /// The right-hand side of our Message-IDs.
    domain: String,
}

impl TemplateGenerator {
    fn new(kind: Kind, t: &Templates, base: Placeholders, domain: &str) -> Result<Self, String> {
        let (validation, unbind_notice, invite) = match kind {
            Kind::Email => (
                include_str!("../../etc/templates/validate-template.eml"),
                include_str!("../../etc/templates/unbind-fraudulent.eml"),
                include_str!("../../etc/templates/invite-template.eml"),
            ),
            Kind::Sms => (
                include_str!("../../etc/templates/validate-template.txt"),
                include_str!("../../etc/templates/unbind-fraudulent.txt"),
                include_str!("../../etc/templates/invite-template.txt"),
            ),
        };
        let read = |path: &Option<std::path::PathBuf>, builtin: &str| {
            template::read_or_builtin(path.as_deref(), builtin)
        };
        Ok(TemplateGenerator {
            kind,
            validation: read(&t.validation, validation)?,
            unbind_notice: read(&t.unbind_fraudulent, unbind_notice)?,
            invite: read(&t.invite, invite)?,
            base,
            domain: domain.to_owned(),
        })
    }

    /// The base placeholders and the recipient's.
    fn for_recipient(&self, address: &str) -> Placeholders {
        let mut p = self.base.clone();
        let medium = match self.kind {
            Kind::Email => "email",
            Kind::Sms => "msisdn",
        };
        p.set("RECIPIENT_MEDIUM", medium)
            .set("RECIPIENT_MEDIUM_URL_ENCODED", medium)
            .set("RECIPIENT_ADDRESS", address)
            .set(
                "RECIPIENT_ADDRESS_URL_ENCODED",
                crate::urlencoded::encode(address),
            );
        p
    }

    fn fill(&self, template: &str, p: &Placeholders) -> Result<String, NotifyError> {
        Ok(match self.kind {
            Kind::Email => template::fill_email(template, p, crate::now_ms() / 1000, &self.domain)?,
            Kind::Sms => template::fill_text(template, p),
        })
    }
}

impl Generator for TemplateGenerator {
    fn validation(&self, v: &Validation<'_>) -> Result<String, NotifyError> {
        let mut p = self.for_recipient(v.address);
        p.set("VALIDATION_LINK", v.link)
            .set("VALIDATION_TOKEN", v.token)
            .set("NEXT_URL", v.next_url);
        self.fill(&self.validation, &p)
    }

    fn unbind_notice(&self, address: &str, mxid: &str) -> Result<String, NotifyError> {
        let mut p = self.for_recipient(address);
        p.set("MXID", mxid);
        self.fill(&self.unbind_notice, &p)
    }

    fn invite(&self, address: &str, values: &Placeholders) -> Result<String, NotifyError> {
        let mut p = self.for_recipient(address);
        for (name, value) in values.iter() {
            p.set(name, value);
        }
        self.fill(&self.invite, &p)
    }
}

/// A connector whose sends are counted (`mxisd_notifications_total`), sent or failed.
struct Counted<C>(Sender, C);

impl<C: Connector> Connector for Counted<C> {
    fn send(&self, to: &str, message: &str) -> Result<(), NotifyError> {
        let sent = self.1.send(to, message);
        crate::metrics::notification(self.0, sent.is_ok());
        sent
    }

    fn longest_send(&self) -> Duration {
        self.1.longest_send()
    }
}
