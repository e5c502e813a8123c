//! `session` and `view.session`: 3PID validation sessions — how long they live, mxisd's
//! validation policy (seed 004: which 3PIDs may be validated here or on another server),
//! and the pages a user sees after clicking a validation link.

use super::check::Resolver;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// How long a session lives after its last requestToken.
    pub expiration: Duration,
    pub policy: ValidationPolicy,
    /// `view.session.onTokenSubmit.{success, failure}`: page templates (`None`: built in).
    pub success_page: Option<PathBuf>,
    pub failure_page: Option<PathBuf>,
    pub limits: SessionLimits,
    /// The pages of remote sessions (mxisd's `view.session.{localRemote, remote}`).
    pub remote_pages: RemotePages,
    /// Tell an address when it is unbound (`session.policy.unbind.notifications`, or
    /// mxisd's `session.policy.unbind.fraudulent.sendWarning`).
    pub unbind_notice: bool,
    /// Who may use the unauthenticated v1 requestToken (`session.v1.allowedCidr`); `None`:
    /// anyone, as mxisd.
    pub v1_allowed: Option<Vec<crate::cidr::Cidr>>,
    /// The hosts a `next_link` may go to (`session.nextLink.allowedHosts`), lower case,
    /// IPv6 literals bracketed; `None`: any http(s) link; empty: none at all.
    pub next_link_hosts: Option<Vec<String>>,
}

/// mxisd's page templates of the remote session workflow (`None`: built in):
/// `view.session.localRemote.onTokenSubmit.{success, failure}` (validated here, the remote
/// offered), `view.session.remote.onRequest.{success, failure}` (the remote session
/// started: "check your mail") and `view.session.remote.onCheck.{success, failure}`.
#[derive(Debug, Clone, Default)]
pub struct RemotePages {
    pub offer: Option<PathBuf>,
    pub offer_failure: Option<PathBuf>,
    pub request: Option<PathBuf>,
    pub request_failure: Option<PathBuf>,
    pub check: Option<PathBuf>,
    pub check_failure: Option<PathBuf>,
}

/// `session.rateLimit`: notifications sent, per instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub per_address: Limit,
    pub per_client: Limit,
    pub per_user: Limit,
    /// SMS per minute to one country, and to all.
    pub sms_per_country: u32,
    pub sms_global: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub burst: u32,
    pub per_minute: u32,
}

impl Limit {
    /// A `{burst, perMinute}` as written, each key defaulting (a burst of at least one).
    pub(super) fn written(l: Option<&raw::Limit>, burst: u32, per_minute: u32) -> Limit {
        Limit {
            burst: l.and_then(|l| l.burst).unwrap_or(burst).max(1),
            per_minute: l.and_then(|l| l.per_minute).unwrap_or(per_minute),
        }
    }
}

/// `session.policy.validation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationPolicy {
    pub enabled: bool,
    /// E-mail addresses on `matrix.domain`.
    pub for_local: Scope,
    /// Every other e-mail address, every phone number.
    pub for_remote: Scope,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub enabled: bool,
    pub to_local: bool,
    pub to_remote: bool,
    /// `toRemote.server`: a label of `matrix.identity.servers`.
    pub remote_server: Option<String>,
}

impl Scope {
    /// Validate here, never elsewhere: what mxisd 1.4 and ma1sd do for every 3PID.
    fn local_only() -> Scope {
        Scope {
            enabled: true,
            to_local: true,
            to_remote: false,
            remote_server: None,
        }
    }
}

impl Resolver<'_> {
    pub(super) fn session(
        &mut self,
        s: raw::Session,
        view: Option<raw::View>,
    ) -> Result<SessionConfig, String> {
        let policy = s.policy.unwrap_or_default();
        let pages = view.and_then(|v| v.session).unwrap_or_default();
        let remote_pages = self.remote_pages(pages.local_remote, pages.remote)?;
        // ma1sd's place, else mxisd 1.x's page for local sessions.
        let submit = pages
            .on_token_submit
            .or_else(|| pages.local.and_then(|l| l.on_token_submit))
            .unwrap_or_default();
        Ok(SessionConfig {
            expiration: self.seconds("session.expiration", s.expiration, 86_400, 30 * 86_400)?,
            policy: self.validation_policy(policy.validation.unwrap_or_default()),
            success_page: self
                .readable_file("view.session.onTokenSubmit.success", submit.success)?,
            failure_page: self
                .readable_file("view.session.onTokenSubmit.failure", submit.failure)?,
            limits: self.session_limits(s.rate_limit.unwrap_or_default()),
            remote_pages,
            unbind_notice: policy.unbind.as_ref().is_some_and(|u| {
                u.notifications == Some(true)
                    || u.fraudulent.as_ref().and_then(|f| f.send_warning) == Some(true)
            }),
            v1_allowed: match s.v1.and_then(|v| v.allowed_cidr) {
                Some(list) => Some(self.cidrs("session.v1.allowedCidr", Some(list))?),
                None => None,
            },
            next_link_hosts: self.next_link_hosts(s.next_link.and_then(|n| n.allowed_hosts))?,
        })
    }

    /// `session.nextLink.allowedHosts`: host names or IP literals, nothing else (no scheme,
    /// port, path or wildcard), so that the comparison with a link's host is exact.
    fn next_link_hosts(&self, list: Option<Vec<String>>) -> Result<Option<Vec<String>>, String> {
        const AT: &str = "session.nextLink.allowedHosts";
        let Some(list) = list else {
            return Ok(None);
        };
        list.iter()
            .map(|written| {
                let h = written.trim().to_ascii_lowercase();
                // An IPv6 literal may be written bare; links carry it bracketed.
                let h = if h.contains(':') && !h.starts_with('[') {
                    format!("[{h}]")
                } else {
                    h
                };
                if is_host_name(&h) {
                    Ok(h)
                } else {
                    Err(self.at(
                        AT,
                        format!(
                            "'{written}' is not a host name (no scheme, port, path or wildcard)"
                        ),
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// mxisd's `view.session.localRemote` and `view.session.remote` pages.
    fn remote_pages(
        &mut self,
        local_remote: Option<raw::ViewScope>,
        remote: Option<raw::ViewRemote>,
    ) -> Result<RemotePages, String> {
        let offer = local_remote
            .and_then(|l| l.on_token_submit)
            .unwrap_or_default();
        let remote = remote.unwrap_or_default();
        let request = remote.on_request.unwrap_or_default();
        let check = remote.on_check.unwrap_or_default();
        const AT: &str = "view.session";
        Ok(RemotePages {
            offer: self.readable_file(
                &format!("{AT}.localRemote.onTokenSubmit.success"),
                offer.success,
            )?,
            offer_failure: self.readable_file(
                &format!("{AT}.localRemote.onTokenSubmit.failure"),
                offer.failure,
            )?,
            request: self
                .readable_file(&format!("{AT}.remote.onRequest.success"), request.success)?,
            request_failure: self
                .readable_file(&format!("{AT}.remote.onRequest.failure"), request.failure)?,
            check: self.readable_file(&format!("{AT}.remote.onCheck.success"), check.success)?,
            check_failure: self
                .readable_file(&format!("{AT}.remote.onCheck.failure"), check.failure)?,
        })
    }

    fn session_limits(&self, r: raw::RateLimit) -> SessionLimits {
        SessionLimits {
            per_address: Limit::written(r.per_address.as_ref(), 3, 1),
            per_client: Limit::written(r.per_client.as_ref(), 20, 10),
            per_user: Limit::written(r.per_user.as_ref(), 20, 10),
            sms_per_country: r.sms_per_country.unwrap_or(50).max(1),
            sms_global: r.sms_global.unwrap_or(200).max(1),
        }
    }

    /// Without scopes, every 3PID is validated here (mxisd 1.4, ma1sd). With scopes, the
    /// seed's table gives each unwritten key: local 3PIDs here (remote offered), remote
    /// 3PIDs only on another server.
    fn validation_policy(&self, v: raw::Validation) -> ValidationPolicy {
        let written = v.for_local.is_some() || v.for_remote.is_some();
        let scope = |s: Option<raw::Scope>, to_local_default: bool| match (written, s) {
            (false, _) => Scope::local_only(),
            (true, s) => {
                let s = s.unwrap_or_default();
                let remote = s.to_remote.unwrap_or_default();
                Scope {
                    enabled: s.enabled.unwrap_or(true),
                    to_local: s.to_local.unwrap_or(to_local_default),
                    to_remote: remote.enabled.unwrap_or(true),
                    remote_server: remote.server,
                }
            }
        };
        ValidationPolicy {
            enabled: v.enabled.unwrap_or(true),
            for_local: scope(v.for_local, true),
            for_remote: scope(v.for_remote, false),
        }
    }
}

/// A host name (letters, digits, `-`, `.`) or a bracketed IPv6 literal: what an operator
/// may list and what a link's host must be to be compared.
pub fn is_host_name(host: &str) -> bool {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.contains(':') && v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }
    }
}

/// `session` and `view` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        Session {
            expiration: u64 = "expiration",
            policy: Policy = "policy",
            rate_limit: RateLimit = "rateLimit",
            v1: V1 = "v1",
            next_link: NextLink = "nextLink",
        }
    }
    section! {
        NextLink {
            allowed_hosts: Vec<String> = "allowedHosts",
        }
    }
    section! {
        RateLimit {
            per_address: Limit = "perAddress",
            per_client: Limit = "perClient",
            per_user: Limit = "perUser",
            sms_per_country: u32 = "smsPerCountry",
            sms_global: u32 = "smsGlobal",
        }
    }
    section! {
        Limit {
            burst: u32 = "burst",
            per_minute: u32 = "perMinute",
        }
    }
    section! {
        V1 {
            allowed_cidr: Vec<String> = "allowedCidr",
        }
    }
    section! {
        Policy {
            validation: Validation = "validation",
            unbind: Unbind = "unbind",
        }
    }
    section! {
        /// ma1sd's `notifications`, mxisd's `fraudulent.sendWarning`.
        Unbind {
            notifications: bool = "notifications",
            fraudulent: Fraudulent = "fraudulent",
        }
    }
    section! {
        Fraudulent {
            send_warning: bool = "sendWarning",
        }
    }
    section! {
        Validation {
            enabled: bool = "enabled",
            for_local: Scope = "forLocal",
            for_remote: Scope = "forRemote",
        }
    }
    section! {
        Scope {
            enabled: bool = "enabled",
            to_local: bool = "toLocal",
            to_remote: ToRemote = "toRemote",
        }
    }
    section! {
        ToRemote {
            enabled: bool = "enabled",
            server: String = "server",
        }
    }
    section! {
        View {
            session: ViewSession = "session",
        }
    }
    section! {
        ViewSession {
            on_token_submit: Pages = "onTokenSubmit",
            local: ViewScope = "local",
            local_remote: ViewScope = "localRemote",
            remote: ViewRemote = "remote",
        }
    }
    section! {
        ViewRemote {
            on_request: Pages = "onRequest",
            on_check: Pages = "onCheck",
        }
    }
    section! {
        ViewScope {
            on_token_submit: Pages = "onTokenSubmit",
        }
    }
    section! {
        Pages {
            success: String = "success",
            failure: String = "failure",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_host_name;
    use crate::config::load_str;

    #[test]
    fn host_names_and_ipv6_literals() {
        assert!(is_host_name("app.example.org"));
        assert!(is_host_name("xn--r8jz45g.jp"));
        assert!(is_host_name("[2001:db8::1]"));
        assert!(!is_host_name("[not-v6]"));
        assert!(!is_host_name("app.example.org:443"));
        assert!(!is_host_name("https://app.example.org"));
        assert!(!is_host_name("*.example.org"));
        assert!(!is_host_name(""));
    }

    #[test]
    fn next_link_allowed_hosts_are_read_lower_case() {
        let with = |list: &str| {
            load_str(
                &format!("matrix:\n  domain: example.org\nsession:\n  nextLink:\n    allowedHosts: {list}\n"),
                "test.yaml",
            )
        };
        let hosts = |list: &str| with(list).unwrap().config.session.next_link_hosts;
        assert_eq!(
            hosts("['App.Example.org', '::1', '[2001:db8::1]']"),
            Some(vec![
                "app.example.org".to_owned(),
                "[::1]".to_owned(),
                "[2001:db8::1]".to_owned()
            ])
        );
        assert_eq!(hosts("[]"), Some(vec![]));
        assert_eq!(hosts("null"), None);
        let absent = load_str("matrix:\n  domain: example.org\n", "test.yaml").unwrap();
        assert_eq!(absent.config.session.next_link_hosts, None);
        for bad in [
            "'https://app.example.org'",
            "'app.example.org:443'",
            "'*.example.org'",
            "''",
        ] {
            let e = with(&format!("[{bad}]")).unwrap_err().to_string();
            assert!(
                e.contains("`session.nextLink.allowedHosts` (line 5)"),
                "{e}"
            );
            assert!(e.contains("is not a host name"), "{e}");
        }
    }

    #[test]
    fn mxisd_remote_workflow_pages_are_read() {
        let page = std::env::temp_dir().join(format!("mxisd-page-{}.html", std::process::id()));
        std::fs::write(&page, "<p>%CHECK_LINK%</p>").unwrap();
        let yaml = format!(
            "matrix:\n  domain: example.org\nview:\n  session:\n    localRemote:\n      onTokenSubmit:\n        success: '{p}'\n    remote:\n      onRequest:\n        success: '{p}'\n      onCheck:\n        failure: '{p}'\n",
            p = page.display()
        );
        let loaded = load_str(&yaml, "test.yaml").unwrap();
        let pages = &loaded.config.session.remote_pages;
        assert_eq!(pages.offer.as_deref(), Some(page.as_path()));
        assert_eq!(pages.request.as_deref(), Some(page.as_path()));
        assert_eq!(pages.check_failure.as_deref(), Some(page.as_path()));
        assert_eq!(pages.check, None);
        assert!(
            !loaded.warnings.iter().any(|w| w.contains("view.session")),
            "{:?}",
            loaded.warnings
        );
        std::fs::remove_file(&page).unwrap();
        let missing = "matrix:\n  domain: example.org\nview:\n  session:\n    remote:\n      onCheck:\n        success: '/nonexistent/page.html'\n";
        let e = load_str(missing, "test.yaml").unwrap_err().to_string();
        assert!(e.contains("view.session.remote.onCheck.success"), "{e}");
    }
}
