//! `ApiError`: every error a client can get, and the one mapping to HTTP status, Matrix
//! errcode and message. Internal details never reach the client: callers log them.

use serde_json::{json, Value};

/// What a client is told when a server its request named could not be asked.
const UPSTREAM_MESSAGE: &str = "homeserver unreachable or refused by policy";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// No such endpoint (404 M_UNRECOGNIZED).
    Unrecognized,
    /// The path exists with other methods (405 M_UNRECOGNIZED).
    MethodNotAllowed,
    /// The thing asked for does not exist (404 M_NOT_FOUND).
    NotFound(String),
    /// A required field or parameter is absent (400 M_MISSING_PARAMS); names it.
    MissingParams(String),
    /// A parameter has a value we cannot accept (400 M_INVALID_PARAM).
    InvalidParam(String),
    /// The body is not JSON (400 M_NOT_JSON).
    NotJson(String),
    /// JSON, but not of the shape the endpoint takes (400 M_BAD_JSON).
    BadJson(String),
    /// The body exceeds `http.maxBodyBytes` (413 M_TOO_LARGE).
    BodyTooLarge(usize),
    /// The request did not arrive within `http.requestTimeout` (408 M_UNKNOWN).
    RequestTimeout,
    /// A malformed request line, header or body framing (400 M_UNKNOWN); says what.
    BadRequest(String),
    /// A request line over the line limit (414 M_UNKNOWN).
    UriTooLong,
    /// Header lines over their limits (431 M_UNKNOWN).
    HeadTooLarge,
    /// An HTTP version other than 1.0 and 1.1 (505 M_UNKNOWN).
    HttpVersion,
    /// An `Expect` other than `100-continue` (417 M_UNKNOWN).
    ExpectationFailed,
    /// `http.maxConnections` are open, or no thread for another one (503 M_UNKNOWN).
    TooManyConnections,
    /// Something on our side failed; the log has the reason (500 M_UNKNOWN).
    Internal,
    /// A backend we depend on is unavailable (503 M_UNKNOWN); names it, no details.
    Unavailable(String),
    /// No access token, or one we do not know (401 M_UNAUTHORIZED).
    Unauthorized(String),
    /// Logout with a token we do not know (401 M_UNKNOWN_TOKEN).
    UnknownToken,
    /// The user has not accepted the current terms (403 M_TERMS_NOT_SIGNED).
    TermsNotSigned,
    /// Refused by policy, e.g. a homeserver not on the allow list (403 M_UNAUTHORIZED).
    Forbidden(String),
    /// More addresses than `lookup.maxAddresses` (400 M_TOO_LARGE).
    TooManyAddresses(usize),
    /// A v2 lookup with another pepper than ours (400 M_INVALID_PEPPER, with ours).
    InvalidPepper { pepper: String },
    /// Too many attempts (429 M_LIMIT_EXCEEDED, with `retry_after_ms`).
    LimitExceeded { retry_after_ms: u64 },
    /// A server a request named could not be asked (502, or 504 for a timeout; M_UNKNOWN).
    /// The message is fixed: what the name resolves to and why the call failed (refused by
    /// the outbound address policy, DNS, TLS, ...) go to the log only, or anyone could map
    /// the internal network through us.
    Upstream { timeout: bool },
    /// Not an e-mail address we can send to (400 M_INVALID_EMAIL).
    InvalidEmail,
    /// Not a phone number (400 M_INVALID_ADDRESS).
    InvalidAddress(String),
    /// The notification could not be sent (500 M_EMAIL_SEND_ERROR for e-mail, else
    /// M_SEND_ERROR).
    SendFailed { email: bool },
    /// Refused by the operator's policy (403 M_FORBIDDEN); names the config key.
    PolicyForbids(String),
    /// No session of that sid and client secret (404 M_NO_VALID_SESSION), or one that can
    /// no longer be used (400 M_NO_VALID_SESSION: too many wrong tokens).
    NoValidSession { ended: bool },
    /// The session expired (400 M_SESSION_EXPIRED).
    SessionExpired,
    /// The token is not the session's (400 M_TOKEN_INCORRECT).
    TokenIncorrect,
    /// The session is not validated yet (400 M_SESSION_NOT_VALIDATED).
    SessionNotValidated,
    /// The address is already bound (400 M_THREEPID_IN_USE, with `mxid`).
    ThreepidInUse { mxid: String },
    /// A medium this endpoint does not take (400 M_UNRECOGNIZED).
    UnrecognizedMedium(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Unrecognized | ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::MissingParams(_)
            | ApiError::TooManyAddresses(_)
            | ApiError::InvalidPepper { .. }
            | ApiError::InvalidParam(_)
            | ApiError::NotJson(_)
            | ApiError::BadJson(_) => 400,
            ApiError::BodyTooLarge(_) => 413,
            ApiError::RequestTimeout => 408,
            ApiError::BadRequest(_) => 400,
            ApiError::UriTooLong => 414,
            ApiError::HeadTooLarge => 431,
            ApiError::HttpVersion => 505,
            ApiError::ExpectationFailed => 417,
            ApiError::TooManyConnections => 503,
            ApiError::Internal => 500,
            ApiError::Unavailable(_) => 503,
            ApiError::Unauthorized(_) | ApiError::UnknownToken => 401,
            ApiError::TermsNotSigned | ApiError::Forbidden(_) => 403,
            ApiError::LimitExceeded { .. } => 429,
            ApiError::Upstream { timeout: true, .. } => 504,
            ApiError::Upstream { timeout: false, .. } => 502,
            ApiError::InvalidEmail
            | ApiError::InvalidAddress(_)
            | ApiError::NoValidSession { ended: true }
            | ApiError::SessionExpired
            | ApiError::TokenIncorrect
            | ApiError::SessionNotValidated => 400,
            ApiError::NoValidSession { ended: false } => 404,
            ApiError::SendFailed { .. } => 500,
            ApiError::PolicyForbids(_) => 403,
            ApiError::ThreepidInUse { .. } | ApiError::UnrecognizedMedium(_) => 400,
        }
    }

    pub(crate) fn errcode(&self) -> &'static str {
        match self {
            ApiError::Unrecognized | ApiError::MethodNotAllowed => "M_UNRECOGNIZED",
            ApiError::NotFound(_) => "M_NOT_FOUND",
            ApiError::MissingParams(_) => "M_MISSING_PARAMS",
            ApiError::InvalidParam(_) => "M_INVALID_PARAM",
            ApiError::NotJson(_) => "M_NOT_JSON",
            ApiError::BadJson(_) => "M_BAD_JSON",
            ApiError::BodyTooLarge(_) | ApiError::TooManyAddresses(_) => "M_TOO_LARGE",
            ApiError::InvalidPepper { .. } => "M_INVALID_PEPPER",
            ApiError::LimitExceeded { .. } => "M_LIMIT_EXCEEDED",
            ApiError::Unauthorized(_) | ApiError::Forbidden(_) => "M_UNAUTHORIZED",
            ApiError::UnknownToken => "M_UNKNOWN_TOKEN",
            ApiError::TermsNotSigned => "M_TERMS_NOT_SIGNED",
            ApiError::RequestTimeout
            | ApiError::BadRequest(_)
            | ApiError::UriTooLong
            | ApiError::HeadTooLarge
            | ApiError::HttpVersion
            | ApiError::ExpectationFailed
            | ApiError::TooManyConnections
            | ApiError::Internal
            | ApiError::Unavailable(_)
            | ApiError::Upstream { .. } => "M_UNKNOWN",
            ApiError::InvalidEmail => "M_INVALID_EMAIL",
            ApiError::InvalidAddress(_) => "M_INVALID_ADDRESS",
            ApiError::SendFailed { email: true } => "M_EMAIL_SEND_ERROR",
            ApiError::SendFailed { email: false } => "M_SEND_ERROR",
            ApiError::PolicyForbids(_) => "M_FORBIDDEN",
            ApiError::NoValidSession { .. } => "M_NO_VALID_SESSION",
            ApiError::SessionExpired => "M_SESSION_EXPIRED",
            ApiError::TokenIncorrect => "M_TOKEN_INCORRECT",
            ApiError::SessionNotValidated => "M_SESSION_NOT_VALIDATED",
            ApiError::ThreepidInUse { .. } => "M_THREEPID_IN_USE",
            ApiError::UnrecognizedMedium(_) => "M_UNRECOGNIZED",
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            ApiError::Unrecognized => "Unrecognized request".into(),
            ApiError::MethodNotAllowed => "Method not allowed on this endpoint".into(),
            ApiError::NotFound(what) => format!("{what} not found"),
            ApiError::MissingParams(name) => format!("Missing parameter: {name}"),
            ApiError::InvalidParam(why) => why.clone(),
            ApiError::NotJson(why) => format!("Body is not valid JSON: {why}"),
            ApiError::BadJson(why) => format!("Malformed JSON body: {why}"),
            ApiError::BodyTooLarge(limit) => format!("Request body is larger than {limit} bytes"),
            ApiError::RequestTimeout => "Request was not received in time".into(),
            ApiError::BadRequest(why) => format!("Bad request: {why}"),
            ApiError::UriTooLong => "Request line too long".into(),
            ApiError::HeadTooLarge => "Request header fields too large".into(),
            ApiError::HttpVersion => "Only HTTP/1.0 and HTTP/1.1 are supported".into(),
            ApiError::ExpectationFailed => "Only 'Expect: 100-continue' is supported".into(),
            ApiError::TooManyConnections => "too many connections".into(),
            ApiError::Internal => "Internal server error".into(),
            ApiError::Unavailable(what) => format!("{what} is unavailable, try again later"),
            ApiError::Unauthorized(why) | ApiError::Forbidden(why) => why.clone(),
            ApiError::UnknownToken => "Unknown access token".into(),
            ApiError::TermsNotSigned => {
                "Terms of service not accepted: see GET /_matrix/identity/v2/terms".into()
            }
            ApiError::Upstream { .. } => UPSTREAM_MESSAGE.into(),
            ApiError::TooManyAddresses(max) => format!("More than {max} addresses in one lookup"),
            ApiError::LimitExceeded { .. } => "Too many requests, try again later".into(),
            ApiError::InvalidPepper { .. } => {
                "Unknown or invalid pepper: get it from hash_details".into()
            }
            ApiError::InvalidEmail => "Not a valid e-mail address".into(),
            ApiError::InvalidAddress(why) => why.clone(),
            ApiError::SendFailed { .. } => "The message could not be sent, try again later".into(),
            ApiError::PolicyForbids(why) => why.clone(),
            ApiError::NoValidSession { ended: false } => {
                "No valid session for this sid and client secret".into()
            }
            ApiError::NoValidSession { ended: true } => {
                "This session has ended after too many wrong tokens: request a new one".into()
            }
            ApiError::SessionExpired => "This session has expired: request a new one".into(),
            ApiError::TokenIncorrect => "The token is incorrect".into(),
            ApiError::SessionNotValidated => "This session is not validated yet".into(),
            ApiError::ThreepidInUse { .. } => "This address is already bound to a Matrix ID".into(),
            ApiError::UnrecognizedMedium(m) => format!("Invites by {m} are not supported"),
        }
    }

    /// The spec-shaped body: `{"errcode":"M_…","error":"…"}`.
    pub(crate) fn body(&self) -> Value {
        let mut body = json!({ "errcode": self.errcode(), "error": self.message() });
        match self {
            // As sydent does, a wrong pepper is answered with the right one.
            ApiError::InvalidPepper { pepper } => {
                body["algorithm"] = json!("sha256");
                body["lookup_pepper"] = json!(pepper);
            }
            ApiError::LimitExceeded { retry_after_ms } => {
                body["retry_after_ms"] = json!(retry_after_ms)
            }
            ApiError::ThreepidInUse { mxid } => body["mxid"] = json!(mxid),
            _ => {}
        }
        body
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status(),
            self.errcode(),
            self.message()
        )
    }
}
