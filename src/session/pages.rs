//! The web pages of GET submitToken (the link in a validation mail opens one): the
//! operator's templates (`view.session.onTokenSubmit`) or ours, read once at start.

use crate::notify::template::Placeholders;

/// The page templates of GET submitToken (`view.session.onTokenSubmit`, else ours), and
/// the placeholders every page has.
pub struct Pages {
    pub success: String,
    pub failure: String,
    pub base: Placeholders,
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
        })
    }
}
