//! `threepid.medium.<medium>`: how notifications reach a 3PID. Per medium a `generator`
//! (what the message says: `template`) and a `connector` (how it is sent: `smtp` for
//! e-mail, `twilio` for SMS), each configured under `generators.<id>` / `connectors.<id>`,
//! and for e-mail the sender (`identity.{from, name}`).

use super::check::Resolver;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ThreepidConfig {
    pub email: EmailConfig,
    pub msisdn: MsisdnConfig,
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// The sender's address and name (`%FROM_EMAIL%`, `%FROM_NAME%`).
    pub from: String,
    pub name: String,
    /// `None`: no connector configured (no `connectors.smtp.host`): sessions by e-mail fail.
    pub smtp: Option<SmtpConfig>,
    pub templates: Templates,
}

#[derive(Debug, Clone)]
pub struct MsisdnConfig {
    /// `None`: no Twilio account configured: sessions by SMS fail.
    pub twilio: Option<TwilioConfig>,
    pub templates: Templates,
}

/// The template generator's files (`None`: the built-in one) and static placeholders.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    pub validation: Option<PathBuf>,
    pub invite: Option<PathBuf>,
    pub unbind_fraudulent: Option<PathBuf>,
    pub placeholders: BTreeMap<String, String>,
}

/// mxisd's `tls` values: 0 none, 1 STARTTLS if offered, 2 STARTTLS required, 3 implicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    None,
    Opportunistic,
    Required,
    Implicit,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub login: Option<String>,
    pub password: Option<String>,
    /// CAs to trust (PEM); default the system's. Certificates are always checked.
    pub ca_file: Option<PathBuf>,
    /// Connect, and each command's answer.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct TwilioConfig {
    pub account_sid: String,
    pub auth_token: String,
    /// The sending number (`From`).
    pub number: String,
    /// Twilio's API, or a server speaking it.
    pub base_url: String,
}

impl Resolver<'_> {
    /// `invite`: mxisd's older place of the e-mail sender (`invite.sender.email`), used where
    /// `threepid.medium.email` does not say.
    pub(super) fn threepid(
        &mut self,
        t: raw::Threepid,
        older: Option<raw::OldSender>,
        domain: &str,
    ) -> Result<ThreepidConfig, String> {
        let mut media = t.medium.unwrap_or_default();
        let mut email = media.remove("email").unwrap_or_default();
        if let Some(old) = older {
            self.unsupported("invite.sender.email", &old.unsupported());
            old_sender(&mut email, old);
        }
        let msisdn = media.remove("msisdn").unwrap_or_default();
        for other in media.keys() {
            self.unsupported("threepid.medium", &[other.as_str()]);
        }
        Ok(ThreepidConfig {
            email: self.email(email, domain)?,
            msisdn: self.msisdn(msisdn)?,
        })
    }

    fn email(&mut self, m: raw::Medium, domain: &str) -> Result<EmailConfig, String> {
        const AT: &str = "threepid.medium.email";
        self.only_id(&format!("{AT}.connector"), m.connector, "smtp")?;
        self.only_id(&format!("{AT}.generator"), m.generator, "template")?;
        let identity = m.identity.unwrap_or_default();
        let mut connectors = m.connectors.unwrap_or_default();
        let smtp = match connectors.smtp.take() {
            Some(s) if s.host.is_some() => Some(self.smtp(&format!("{AT}.connectors.smtp"), s)?),
            _ => None,
        };
        if connectors.twilio.is_some() {
            return Err(self.at(
                &format!("{AT}.connectors.twilio"),
                "sends SMS, not e-mail: configure it under threepid.medium.msisdn",
            ));
        }
        Ok(EmailConfig {
            from: self
                .non_empty(&format!("{AT}.identity.from"), identity.from)?
                .unwrap_or_else(|| format!("noreply@{domain}")),
            name: identity.name.unwrap_or_default(),
            smtp,
            templates: self.templates(&format!("{AT}.generators.template"), m.generators)?,
        })
    }

    fn msisdn(&mut self, m: raw::Medium) -> Result<MsisdnConfig, String> {
        const AT: &str = "threepid.medium.msisdn";
        self.only_id(&format!("{AT}.connector"), m.connector, "twilio")?;
        self.only_id(&format!("{AT}.generator"), m.generator, "template")?;
        let twilio = match m.connectors.unwrap_or_default().twilio {
            Some(t) => Some(self.twilio(&format!("{AT}.connectors.twilio"), t)?),
            None => None,
        };
        Ok(MsisdnConfig {
            twilio,
            templates: self.templates(&format!("{AT}.generators.template"), m.generators)?,
        })
    }

    /// A generator or connector id: only the one this version has.
    fn only_id(&self, path: &str, id: Option<String>, known: &str) -> Result<(), String> {
        match id.as_deref() {
            None => Ok(()),
            Some(id) if id == known => Ok(()),
            Some(other) => Err(self.at(
                path,
                format!("'{other}' is not implemented by this version (only '{known}')"),
            )),
        }
    }

    pub(super) fn smtp(&mut self, at: &str, s: raw::Smtp) -> Result<SmtpConfig, String> {
        let host = self
            .non_empty(&format!("{at}.host"), s.host)?
            .ok_or_else(|| self.required(&format!("{at}.host"), ""))?;
        let tls = match s.tls.unwrap_or(1) {
            0 => SmtpTls::None,
            1 => SmtpTls::Opportunistic,
            2 => SmtpTls::Required,
            3 => SmtpTls::Implicit,
            n => {
                return Err(self.at(
                    &format!("{at}.tls"),
                    format!("{n} is not 0 (none), 1 (STARTTLS if offered), 2 (STARTTLS required) or 3 (implicit TLS)"),
                ))
            }
        };
        let default_port = if tls == SmtpTls::Implicit { 465 } else { 587 };
        // mxisd read an empty login as "no authentication" (`login: ''` is common in
        // deployed configs): no AUTH then, and a password alone is ignored, said once.
        let login = s
            .login
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty());
        let password = s.password.filter(|p| !p.is_empty());
        if login.is_none() && password.is_some() {
            self.warnings.push(format!(
                "{at}.password is ignored: {at}.login is empty, so mails go without authentication"
            ));
        }
        Ok(SmtpConfig {
            host,
            port: s.port.unwrap_or(default_port),
            tls,
            login,
            password,
            ca_file: self.pem_file(&format!("{at}.caFile"), s.ca_file)?,
            timeout: self.seconds(&format!("{at}.timeout"), s.timeout, 10, 300)?,
        })
    }

    fn twilio(&mut self, at: &str, t: raw::Twilio) -> Result<TwilioConfig, String> {
        let required = |key: &str, value: Option<String>| -> Result<String, String> {
            self.non_empty(&format!("{at}.{key}"), value)?
                .ok_or_else(|| self.required(&format!("{at}.{key}"), ""))
        };
        let account_sid = required("accountSid", t.account_sid)?;
        let auth_token = required("authToken", t.auth_token)?;
        let number = required("number", t.number)?;
        let base_url = t
            .base_url
            .unwrap_or_else(|| "https://api.twilio.com".into())
            .trim_end_matches('/')
            .to_owned();
        self.http_url(&format!("{at}.baseUrl"), &base_url)?;
        Ok(TwilioConfig {
            account_sid,
            auth_token,
            number,
            base_url,
        })
    }

    fn templates(&mut self, at: &str, g: Option<raw::Generators>) -> Result<Templates, String> {
        let t = g.and_then(|g| g.template).unwrap_or_default();
        self.unsupported(at, &t.unsupported());
        let session = t.session.unwrap_or_default();
        // ma1sd: `session.validation` is a file; mxisd 1.x: `{local, remote}`, and only
        // local sessions are sent from here.
        let validation = match session.validation {
            Some(raw::Validation::File(f)) => Some(f),
            Some(raw::Validation::Scoped { local, .. }) => local,
            None => None,
        };
        let file = |me: &Self, key: &str, value: Option<String>| {
            me.readable_file(&format!("{at}.{key}"), value)
        };
        Ok(Templates {
            validation: file(self, "session.validation", validation)?,
            invite: file(self, "invite", t.invite)?,
            unbind_fraudulent: file(
                self,
                "session.unbind.fraudulent",
                session.unbind.and_then(|u| u.fraudulent),
            )?,
            placeholders: t.placeholder.unwrap_or_default(),
        })
    }
}

/// mxisd's older keys (`invite.sender.email.{host, port, tls, login, password, email,
/// name}`) fill what `threepid.medium.email` leaves out.
fn old_sender(email: &mut raw::Medium, old: raw::OldSender) {
    let identity = email.identity.get_or_insert_with(Default::default);
    identity.from = identity.from.take().or(old.email);
    identity.name = identity.name.take().or(old.name);
    let connectors = email.connectors.get_or_insert_with(Default::default);
    if connectors.smtp.is_none() && old.host.is_some() {
        connectors.smtp = Some(raw::Smtp {
            host: old.host,
            port: old.port,
            tls: old.tls,
            login: old.login,
            password: old.password,
            ca_file: None,
            timeout: None,
        });
    }
}

/// `threepid` (and `invite`'s sender) as written.
pub(super) mod raw {
    use crate::config::yaml::section;
    use std::collections::BTreeMap;

    section! {
        Threepid {
            medium: BTreeMap<String, Medium> = "medium",
        }
    }
    section! {
        Medium {
            identity: Identity = "identity",
            connector: String = "connector",
            generator: String = "generator",
            connectors: Connectors = "connectors",
            generators: Generators = "generators",
        }
    }
    section! {
        Identity {
            from: String = "from",
            name: String = "name",
        }
    }
    section! {
        Connectors {
            smtp: Smtp = "smtp",
            twilio: Twilio = "twilio",
        }
    }
    section! {
        /// mxisd's SMTP connector (also `invite.sender.email`, its older place).
        Smtp {
            host: String = "host",
            port: u16 = "port",
            tls: u8 = "tls",
            login: String = "login",
            password: String = "password",
            ca_file: String = "caFile",
            timeout: u64 = "timeout",
        }
    }
    section! {
        /// mxisd's older SMTP sender (`invite.sender.email`).
        OldSender {
            host: String = "host",
            port: u16 = "port",
            tls: u8 = "tls",
            login: String = "login",
            password: String = "password",
            email: String = "email",
            name: String = "name",
        } unsupported {
            template = "template",
        }
    }
    section! {
        Twilio {
            account_sid: String = "accountSid",
            auth_token: String = "authToken",
            number: String = "number",
            base_url: String = "baseUrl",
        }
    }
    section! {
        Generators {
            template: Template = "template",
        }
    }
    section! {
        Template {
            invite: String = "invite",
            session: TemplateSession = "session",
            placeholder: BTreeMap<String, String> = "placeholder",
        } unsupported {
            generic = "generic",
        }
    }
    section! {
        TemplateSession {
            validation: Validation = "validation",
            unbind: TemplateUnbind = "unbind",
        }
    }
    section! {
        TemplateUnbind {
            fraudulent: String = "fraudulent",
        }
    }

    /// ma1sd's file, or mxisd 1.x's files per session scope.
    #[derive(serde::Deserialize, Debug)]
    #[serde(untagged)]
    pub enum Validation {
        File(String),
        Scoped {
            local: Option<String>,
            #[allow(dead_code)]
            remote: Option<String>,
        },
    }
}
