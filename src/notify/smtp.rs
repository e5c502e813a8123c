//! The `smtp` connector (lettre's blocking transport): mxisd's `tls` modes (none, STARTTLS
//! if offered, STARTTLS required, implicit TLS), certificates always checked (against
//! `caFile`, else the system's CAs), connections pooled and reused, every connect and
//! command under `timeout`. Messages go as written by the generator (whole RFC 5322
//! messages), the envelope from the sender identity to the 3PID.

use super::{Connector, NotifyError};
use crate::config::{SmtpConfig, SmtpTls};
use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{SmtpTransport, Transport};

pub struct Smtp {
    transport: SmtpTransport,
    from: Address,
}

impl Smtp {
    /// `from`: the envelope sender (`threepid.medium.email.identity.from`).
    pub fn new(cfg: &SmtpConfig, from: &str) -> Result<Smtp, String> {
        let at = "threepid.medium.email.connectors.smtp";
        let from: Address = from
            .parse()
            .map_err(|e| format!("threepid.medium.email.identity.from '{from}': {e}"))?;
        let tls = match cfg.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Opportunistic => Tls::Opportunistic(tls_parameters(cfg, at)?),
            SmtpTls::Required => Tls::Required(tls_parameters(cfg, at)?),
            SmtpTls::Implicit => Tls::Wrapper(tls_parameters(cfg, at)?),
        };
        let mut builder = SmtpTransport::builder_dangerous(&cfg.host)
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(cfg.timeout))
            .pool_config(PoolConfig::new().max_size(16));
        if let Some(login) = &cfg.login {
            builder = builder.credentials(Credentials::new(
                login.clone(),
                cfg.password.clone().unwrap_or_default(),
            ));
        }
        Ok(Smtp {
            transport: builder.build(),
            from,
        })
    }
}

fn tls_parameters(cfg: &SmtpConfig, at: &str) -> Result<TlsParameters, String> {
    let mut params = TlsParameters::builder(cfg.host.clone());
    if let Some(path) = &cfg.ca_file {
        let pem =
            std::fs::read(path).map_err(|e| format!("{at}.caFile {}: {e}", path.display()))?;
        let certs = Certificate::from_pem(&pem)
            .map_err(|e| format!("{at}.caFile {}: {e}", path.display()))?;
        params = params
            .certificate_store(CertificateStore::None)
            .add_root_certificate(certs);
    }
    params.build().map_err(|e| format!("{at}: TLS: {e}"))
}

impl Connector for Smtp {
    fn send(&self, to: &str, message: &str) -> Result<(), NotifyError> {
        let to: Address = to
            .parse()
            .map_err(|e| NotifyError::Send(format!("recipient '{to}': {e}")))?;
        let envelope = Envelope::new(Some(self.from.clone()), vec![to])
            .map_err(|e| NotifyError::Send(e.to_string()))?;
        self.transport
            .send_raw(&envelope, message.as_bytes())
            .map(drop)
            .map_err(|e| NotifyError::Send(format!("SMTP: {}", crate::pg::with_causes(&e))))
    }
}
