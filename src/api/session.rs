//! 3PID validation sessions: `validate/{email,msisdn}/requestToken`, `…/submitToken` (POST
//! from clients, GET from the link in a mail), `3pid/getValidated3pid`. v2 needs the access
//! token and accepted terms, except GET submitToken: it is a link in a mail, and carries no
//! token (on v1 and v2).

use super::auth;
use crate::app::App;
use crate::http::{ApiError, Reply, Request};
use crate::notify::template::fill_html;
use crate::notify::NotifyError;
use crate::opaque_id::{self, ClientSecret, Sid};
use crate::session::next_link::{self, Refusal};
use crate::session::remote::AfterLocal;
use crate::session::{SessionError, TokenAsk};
use crate::threepid::Medium;
use serde::Deserialize;
use serde_json::json;
use std::borrow::Cow;

/// The v2 paths (`V2`) need an authorised caller, its user id; v1 is open.
fn caller<const V2: bool>(app: &App, req: &Request) -> Result<Option<String>, ApiError> {
    Ok(if V2 {
        Some(auth::authorized(app, req)?.user_id)
    } else {
        None
    })
}

/// Who asks for a token: on v1, only `session.v1.allowedCidr` (when set).
fn requester<const V2: bool>(app: &App, req: &Request) -> Result<Option<String>, ApiError> {
    let user = caller::<V2>(app, req)?;
    if let (false, Some(allowed)) = (V2, &app.sessions.config().v1_allowed) {
        if !req.client.is_in(allowed) {
            log::info!(
                "v1 requestToken from {} refused (session.v1.allowedCidr)",
                req.client
            );
            return Err(ApiError::Forbidden(
                "Use the v2 API (with an access token) to validate an address from here".into(),
            ));
        }
    }
    Ok(user)
}

#[derive(Deserialize)]
struct EmailRequest {
    client_secret: String,
    email: String,
    #[serde(deserialize_with = "super::number::int_or_digits")]
    send_attempt: i64,
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct MsisdnRequest {
    client_secret: String,
    country: String,
    phone_number: String,
    #[serde(deserialize_with = "super::number::int_or_digits")]
    send_attempt: i64,
    next_link: Option<String>,
}

/// # `POST …/validate/email/requestToken`
///
/// `{client_secret, email, send_attempt, next_link?}` → `{"sid"}`: sends a link to the
/// address, unless `send_attempt` is not higher than the last one (then the same sid, and
/// nothing sent). 400 M_INVALID_EMAIL, 403 M_FORBIDDEN (the policy, naming its key), 429
/// M_LIMIT_EXCEEDED, 500 M_EMAIL_SEND_ERROR.
pub fn request_email<const V2: bool>(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let user = requester::<V2>(app, req)?;
    let body: EmailRequest = req.json()?;
    let address = crate::threepid::email_to_send_to(&body.email).ok_or(ApiError::InvalidEmail)?;
    let next_link = requested_next_link(app, body.next_link.as_deref())?;
    let client_secret = client_secret(&body.client_secret)?;
    request(
        app,
        &TokenAsk {
            medium: Medium::Email,
            address: &address,
            client_secret: &client_secret,
            send_attempt: body.send_attempt,
            next_link: next_link.as_deref(),
            client: &req.client.to_string(),
            user: user.as_deref(),
            country: None,
        },
    )
}

/// # `POST …/validate/msisdn/requestToken`
///
/// `{client_secret, country, phone_number, send_attempt, next_link?}` → `{"sid"}`: sends a
/// 6-digit code by SMS. 400 M_INVALID_ADDRESS, 403 M_FORBIDDEN, 429 M_LIMIT_EXCEEDED, 500
/// M_SEND_ERROR.
pub fn request_msisdn<const V2: bool>(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let user = requester::<V2>(app, req)?;
    let body: MsisdnRequest = req.json()?;
    let number =
        crate::threepid::msisdn_in(&body.phone_number, &body.country).ok_or_else(|| {
            ApiError::InvalidAddress(format!(
                "'{}' is not a phone number of country '{}'",
                body.phone_number.chars().take(40).collect::<String>(),
                body.country.chars().take(8).collect::<String>()
            ))
        })?;
    let country = body.country.trim().to_ascii_uppercase();
    let next_link = requested_next_link(app, body.next_link.as_deref())?;
    let client_secret = client_secret(&body.client_secret)?;
    request(
        app,
        &TokenAsk {
            medium: Medium::Msisdn,
            address: &number,
            client_secret: &client_secret,
            send_attempt: body.send_attempt,
            next_link: next_link.as_deref(),
            client: &req.client.to_string(),
            user: user.as_deref(),
            country: Some(&country),
        },
    )
}

fn request(app: &App, ask: &TokenAsk<'_>) -> Result<Reply, ApiError> {
    let sid = app.sessions.request_token(&app.state, ask)?;
    Ok(Reply::json(json!({ "sid": sid.as_str() })))
}

/// A requestToken's `next_link`, kept as a URI: it goes out as the `Location` of the
/// link's redirect. Refused unless `session::next_link` accepts it (http(s), and a host of
/// `session.nextLink.allowedHosts` when set).
fn requested_next_link<'a>(
    app: &App,
    link: Option<&'a str>,
) -> Result<Option<Cow<'a, str>>, ApiError> {
    let next_link = link.map(as_uri);
    if let Some(link) = &next_link {
        if let Err(why) = next_link::check(link, app.sessions.config().next_link_hosts.as_deref()) {
            if why != Refusal::Malformed {
                log::info!("requestToken refused: {why} (session.nextLink.allowedHosts)");
            }
            return Err(ApiError::InvalidParam(why.to_string()));
        }
    }
    Ok(next_link)
}

/// A stored `next_link` the link's page may redirect to: one `session::next_link` still
/// accepts (the allow-list may have been set or changed since it was stored), as a URI (a
/// link stored before they were kept as URIs may still be an IRI). `None`: the page itself.
fn stored_next_link(app: &App, sid: &Sid, link: Option<&str>) -> Option<String> {
    let link = as_uri(link?).into_owned();
    match next_link::check(&link, app.sessions.config().next_link_hosts.as_deref()) {
        Ok(()) => Some(link),
        Err(why) => {
            log::info!("session {sid}: no redirect to its stored next_link: {why}");
            None
        }
    }
}

/// A requestToken's `client_secret`, which names a session from now on.
fn client_secret(secret: &str) -> Result<ClientSecret, ApiError> {
    ClientSecret::parse(secret)
        .ok_or_else(|| ApiError::InvalidParam(format!("client_secret must be {}", opaque_id::RULE)))
}

/// The session a client names by its sid and secret, both parsed here. Ones that cannot
/// be a sid or a secret name no session, as an unknown sid or a wrong secret do (404
/// M_NO_VALID_SESSION): nothing tells the client which of the two was wrong.
pub(super) fn session_of(sid: &str, secret: &str) -> Result<(Sid, ClientSecret), SessionError> {
    Sid::parse(sid)
        .zip(ClientSecret::parse(secret))
        .ok_or(SessionError::NoSession)
}

#[derive(Deserialize)]
struct Submit {
    sid: String,
    client_secret: String,
    token: String,
}

/// # `POST …/validate/{email,msisdn}/submitToken`
///
/// `{sid, client_secret, token}` → `{"success":true}`. 400 M_TOKEN_INCORRECT, 400
/// M_SESSION_EXPIRED, 404 M_NO_VALID_SESSION (unknown sid or secret), 400
/// M_NO_VALID_SESSION after too many wrong tokens.
pub fn submit<const V2: bool>(app: &App, req: &Request) -> Result<Reply, ApiError> {
    caller::<V2>(app, req)?;
    let body: Submit = req.json()?;
    let (sid, secret) = session_of(&body.sid, &body.client_secret)?;
    app.sessions
        .submit_token(&app.state, &sid, &secret, &body.token)?;
    Ok(Reply::json(json!({ "success": true })))
}

/// # `GET …/validate/{email,msisdn}/submitToken?sid&client_secret&token`
///
/// The link in the mail: no access token. Answers a page saying whether it worked; on
/// success, redirects to the `next_link` stored with the session when `session::next_link`
/// still accepts it (else the page, logged) — never to one from this link. A `next_link` is kept as a URI (`as_uri`), so that it can be the
/// redirect's `Location`.
pub fn submit_link(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let param = |name: &str| req.query(name).unwrap_or_default();
    let outcome = session_of(param("sid"), param("client_secret")).and_then(|(sid, secret)| {
        app.sessions
            .submit_token(&app.state, &sid, &secret, param("token"))
    });
    let mut values = app.pages.base.clone();
    match outcome {
        Ok(session) => {
            values.set("RECIPIENT_ADDRESS", session.address.as_str());
            let next = stored_next_link(app, &session.sid, session.next_link.as_deref());
            values.set("NEXT_URL", next.clone().unwrap_or_default());
            values.set("REMOTE_NOTE", "");
            // Remote sessions: the workflow's next page instead of the client's next_link.
            let after = app
                .sessions
                .after_local(&app.state, &app.federation, &session);
            if let Some(page) = remote_page(app, &session, after, &mut values) {
                return Ok(page);
            }
            let page = fill_html(&app.pages.success, &values);
            Ok(match next {
                Some(link) => Reply::redirect(&link, page),
                None => Reply::html(200, page),
            })
        }
        Err(e) => {
            let error = ApiError::from(e);
            values.set("REASON", page_reason(&error));
            Ok(Reply::html(
                error.status(),
                fill_html(&app.pages.failure, &values),
            ))
        }
    }
}

/// The page that follows our token's validation in a remote session's workflow; `None`:
/// the local flow's page as it always was.
fn remote_page(
    app: &App,
    session: &crate::state::SessionRow,
    after: AfterLocal,
    values: &mut crate::notify::template::Placeholders,
) -> Option<Reply> {
    let links = WorkflowLinks::of(&session.sid, &session.client_secret);
    let pages = &app.pages.remote;
    let (template, status) = match after {
        AfterLocal::Done { note: None } => return None,
        AfterLocal::Done {
            note: Some((server, why)),
        } => {
            values.set(
                "REMOTE_NOTE",
                format!("It is not published on {server}: {why}."),
            );
            values.set("REMOTE_SERVER", server);
            (&app.pages.success, 200)
        }
        AfterLocal::Offer { server } => {
            values
                .set("REMOTE_SERVER", server)
                .set("REMOTE_SESSION_LINK", links.start.as_str());
            (&pages.offer, 200)
        }
        AfterLocal::Started { server } => {
            values
                .set("REMOTE_SERVER", server)
                .set("CHECK_LINK", links.check.as_str());
            (&pages.request, 200)
        }
        AfterLocal::Failed { server, why } => {
            values
                .set("REMOTE_SERVER", server)
                .set("REASON", why)
                .set("RETRY_LINK", links.start.as_str());
            (&pages.request_failure, 502)
        }
    };
    Some(Reply::html(status, fill_html(template, values)))
}

/// The links of the workflow's pages, for our session (root-relative: the pages are
/// served where the user opened our link).
struct WorkflowLinks {
    start: String,
    check: String,
}

impl WorkflowLinks {
    fn of(sid: &Sid, secret: &ClientSecret) -> WorkflowLinks {
        let query = format!(
            "sid={}&client_secret={}",
            crate::urlencoded::encode(sid.as_str()),
            crate::urlencoded::encode(secret.as_str())
        );
        WorkflowLinks {
            start: format!("{REMOTE}/validate/requestToken?{query}"),
            check: format!("{REMOTE}/validate/check?{query}"),
        }
    }
}

/// Where the workflow's pages are (mxisd's remote session API).
pub(super) const REMOTE: &str = "/_matrix/identity/remote/1.0";

/// # `GET /_matrix/identity/remote/1.0/validate/requestToken?sid&client_secret`
///
/// The user accepts the offer (or retries a remote-only start): starts the session on the
/// remote server, which mails the user; answers mxisd's `remote.onRequest` page ("check
/// your mail from …", with the check link), or its failure page saying why.
pub fn remote_request(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let param = |name: &str| req.query(name).unwrap_or_default();
    let outcome = session_of(param("sid"), param("client_secret")).and_then(|(sid, secret)| {
        let (server, address) =
            app.sessions
                .start_remote(&app.state, &app.federation, &sid, &secret)?;
        Ok((server, address, WorkflowLinks::of(&sid, &secret)))
    });
    let mut values = app.pages.base.clone();
    let pages = &app.pages.remote;
    match outcome {
        Ok((server, address, links)) => {
            values
                .set("REMOTE_SERVER", server)
                .set("CHECK_LINK", links.check)
                .set("RECIPIENT_ADDRESS", address);
            Ok(Reply::html(200, fill_html(&pages.request, &values)))
        }
        Err(e) => Ok(workflow_failure(
            &pages.request_failure,
            e,
            &mut values,
            &retry_link(req, "requestToken"),
        )),
    }
}

/// # `GET /_matrix/identity/remote/1.0/validate/check?sid&client_secret`
///
/// The user followed the remote's link: asks the remote, binds there a user bound here
/// meanwhile; answers mxisd's `remote.onCheck` page, or its failure page saying why (not
/// yet validated there: follow the link in its mail first).
pub fn remote_check(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let param = |name: &str| req.query(name).unwrap_or_default();
    let outcome = session_of(param("sid"), param("client_secret")).and_then(|(sid, secret)| {
        app.sessions
            .check_remote(&app.state, &app.federation, &sid, &secret)
    });
    let mut values = app.pages.base.clone();
    let pages = &app.pages.remote;
    match outcome {
        Ok((server, session)) => {
            let next = stored_next_link(app, &session.sid, session.next_link.as_deref());
            values
                .set("REMOTE_SERVER", server)
                .set("RECIPIENT_ADDRESS", session.address)
                .set("NEXT_URL", next.unwrap_or_default());
            Ok(Reply::html(200, fill_html(&pages.check, &values)))
        }
        Err(e) => Ok(workflow_failure(
            &pages.check_failure,
            e,
            &mut values,
            &retry_link(req, "check"),
        )),
    }
}

/// The link of the workflow step `req` asked, to try it again.
fn retry_link(req: &Request, step: &str) -> String {
    let param = |name: &str| crate::urlencoded::encode(req.query(name).unwrap_or_default());
    format!(
        "{REMOTE}/validate/{step}?sid={}&client_secret={}",
        param("sid"),
        param("client_secret")
    )
}

/// A workflow step's failure page: the reason, and the link to try the step again.
fn workflow_failure(
    template: &str,
    e: SessionError,
    values: &mut crate::notify::template::Placeholders,
    retry: &str,
) -> Reply {
    let (server, reason) = match &e {
        SessionError::Remote { server, why } => (server.clone(), format!("{server}: {why}.")),
        SessionError::NotValidated => (
            String::new(),
            "The address is not confirmed there yet: open the link in its mail first, then try again."
                .to_owned(),
        ),
        _ => (String::new(), String::new()),
    };
    let error = ApiError::from(e);
    let reason = if reason.is_empty() {
        page_reason(&error).to_owned()
    } else {
        reason
    };
    let server = if server.is_empty() {
        "the other server".to_owned()
    } else {
        server
    };
    values
        .set("REMOTE_SERVER", server)
        .set("REASON", reason)
        .set("RETRY_LINK", retry);
    Reply::html(error.status(), fill_html(template, values))
}

/// The URI of an IRI (RFC 3987, 3.1): every non-ASCII character percent-encoded as its
/// UTF-8 octets, everything else as it is (a URI stays the same). A browser reads the
/// result as the same address, host included, and it can be an HTTP header.
fn as_uri(link: &str) -> Cow<'_, str> {
    if link.is_ascii() {
        return Cow::Borrowed(link);
    }
    let mut uri = String::with_capacity(link.len() * 3);
    for c in link.chars() {
        if c.is_ascii() {
            uri.push(c);
        } else {
            for octet in c.encode_utf8(&mut [0; 4]).bytes() {
                uri.push_str(&format!("%{octet:02X}"));
            }
        }
    }
    Cow::Owned(uri)
}

fn page_reason(e: &ApiError) -> &'static str {
    match e {
        ApiError::TokenIncorrect => "The code in this link is not the right one.",
        ApiError::SessionExpired => "This link has expired.",
        ApiError::NoValidSession { ended: true } => {
            "This request was stopped after too many wrong codes."
        }
        ApiError::NoValidSession { ended: false } => "This link is not known here, or no longer.",
        ApiError::Unavailable(_) => "The server cannot check it right now: try again in a minute.",
        _ => "Something went wrong on our side: try again later.",
    }
}

/// # `GET …/3pid/getValidated3pid?sid&client_secret`
///
/// `{medium, address, validated_at}`; 400 M_SESSION_NOT_VALIDATED, 400 M_SESSION_EXPIRED,
/// 404 M_NO_VALID_SESSION.
pub fn get_validated<const V2: bool>(app: &App, req: &Request) -> Result<Reply, ApiError> {
    caller::<V2>(app, req)?;
    let sid = req.require_query("sid")?;
    let secret = req.require_query("client_secret")?;
    let (sid, secret) = session_of(sid, secret)?;
    let v = app.sessions.validated(&app.state, &sid, &secret)?;
    // A remote-only session is validated once its remote is.
    app.sessions
        .remote_gate(&app.state, &app.federation, &sid)?;
    Ok(Reply::json(json!({
        "medium": v.medium.as_str(),
        "address": v.address,
        "validated_at": v.validated_at,
    })))
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> ApiError {
        match e {
            SessionError::Forbidden(why) => {
                log::info!("session refused by policy: {why}");
                ApiError::PolicyForbids(why)
            }
            // Logged by the gate; the client may try again in a moment.
            SessionError::SendFailed(_, NotifyError::Busy) => {
                ApiError::Unavailable("The mail and SMS sender".into())
            }
            SessionError::SendFailed(medium, e) => {
                log::error!("session: the {medium} could not be sent: {e}");
                ApiError::SendFailed {
                    email: medium == Medium::Email,
                }
            }
            SessionError::NoSession => ApiError::NoValidSession { ended: false },
            SessionError::Ended => ApiError::NoValidSession { ended: true },
            SessionError::Expired => ApiError::SessionExpired,
            SessionError::TokenIncorrect => ApiError::TokenIncorrect,
            SessionError::NotValidated => ApiError::SessionNotValidated,
            SessionError::Limited(wait) => ApiError::LimitExceeded {
                retry_after_ms: wait.as_millis() as u64,
            },
            SessionError::Random(e) => {
                log::error!("session: no randomness: {e}");
                ApiError::Internal
            }
            // Logged where it failed, with the server's answer.
            SessionError::Remote { server, .. } => {
                ApiError::Unavailable(format!("The identity server {server}"))
            }
            SessionError::State(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::as_uri;

    #[test]
    fn an_iri_becomes_its_uri() {
        assert_eq!(
            as_uri("https://example.org/vérifié?x=ü#ç"),
            "https://example.org/v%C3%A9rifi%C3%A9?x=%C3%BC#%C3%A7"
        );
        assert_eq!(
            as_uri("https://例え.jp/日本"),
            "https://%E4%BE%8B%E3%81%88.jp/%E6%97%A5%E6%9C%AC"
        );
        // A URI, escapes included, is left as it is.
        let uri = "https://example.org/a%20b?c=d&e=%C3%BC";
        assert_eq!(as_uri(uri), uri);
    }
}
