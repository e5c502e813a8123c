//! The web pages of GET submitToken (the link in a validation mail opens one): the
//! operator's templates (`view.session.onTokenSubmit`) or ours, read once at start.

use crate::notify::template::Placeholders;

/// The page templates of GET submitToken (`view.session.onTokenSubmit`, else ours), and
/// the placeholders every page has.
pub struct Pages {
    pub success: String,
    pub failure: String,
    pub base: Placeholders,
    /// The remote session workflow's pages (`view.session.{localRemote, remote}`).
    pub remote: RemotePages,
}

/// The pages of the remote session workflow (`remote.rs`), the operator's or ours.
pub struct RemotePages {
    /// Validated here, publishing on the remote offered (`%REMOTE_SESSION_LINK%`).
    pub offer: String,
    pub offer_failure: String,
    /// The remote session started: check your mail from it (`%CHECK_LINK%`).
    pub request: String,
    pub request_failure: String,
    /// The remote validated: done.
    pub check: String,
    pub check_failure: String,
}

impl Pages {
    pub fn from_config(config: &crate::config::Config) -> Result<Pages, String> {
        let read = |path: &Option<std::path::PathBuf>, builtin: &str| {
            crate::notify::template::read_or_builtin(path.as_deref(), builtin)
        };
        let domain = &config.matrix.domain;
        let mut base = Placeholders::new();
        base.set("DOMAIN", domain.as_str())
            .set("DOMAIN_PRETTY", crate::notify::domain_pretty(domain));
        Ok(Pages {
            success: read(
                &config.session.success_page,
                include_str!("../../etc/templates/session-success.html"),
            )?,
            failure: read(
                &config.session.failure_page,
                include_str!("../../etc/templates/session-failure.html"),
            )?,
            base,
            remote: remote_pages(&config.session.remote_pages, &config.session.failure_page)?,
        })
    }
}

fn remote_pages(
    p: &crate::config::RemotePages,
    local_failure: &Option<std::path::PathBuf>,
) -> Result<RemotePages, String> {
    let read = |path: &Option<std::path::PathBuf>, builtin: &str| {
        crate::notify::template::read_or_builtin(path.as_deref(), builtin)
    };
    let failure = include_str!("../../etc/templates/session-remote-failure.html");
    Ok(RemotePages {
        offer: read(
            &p.offer,
            include_str!("../../etc/templates/session-remote-offer.html"),
        )?,
        // The token's failure is the same whatever follows: the local page, unless set.
        offer_failure: read(
            &p.offer_failure.clone().or_else(|| local_failure.clone()),
            include_str!("../../etc/templates/session-failure.html"),
        )?,
        request: read(
            &p.request,
            include_str!("../../etc/templates/session-remote-request.html"),
        )?,
        request_failure: read(&p.request_failure, failure)?,
        check: read(
            &p.check,
            include_str!("../../etc/templates/session-remote-done.html"),
        )?,
        check_failure: read(&p.check_failure, failure)?,
    })
}
