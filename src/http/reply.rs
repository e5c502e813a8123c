//! What a handler answers: JSON with a status, or (for the pages a user sees after clicking a
//! link in a mail) HTML, maybe redirecting. Every reply carries the CORS headers.

use super::ApiError;
use serde_json::Value;
use std::io::Cursor;
use tiny_http::{Header, Response};

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    /// A redirect's target.
    location: Option<String>,
}

const CORS: [(&str, &str); 3] = [
    ("Access-Control-Allow-Origin", "*"),
    (
        "Access-Control-Allow-Methods",
        "GET, POST, PUT, DELETE, OPTIONS",
    ),
    (
        "Access-Control-Allow-Headers",
        "Origin, X-Requested-With, Content-Type, Accept, Authorization",
    ),
];

impl Reply {
    /// 200 with a JSON body.
    pub fn json(value: Value) -> Reply {
        Reply::json_status(200, &value)
    }

    /// 200 with any serializable body (no intermediate `Value`).
    pub(crate) fn json_of<T: serde::Serialize + ?Sized>(value: &T) -> Reply {
        Reply::json_status(200, value)
    }

    pub(crate) fn json_status<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Reply {
        Reply {
            status,
            body: serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
            content_type: "application/json",
            location: None,
        }
    }

    /// An HTML page.
    pub(crate) fn html(status: u16, page: String) -> Reply {
        Reply {
            status,
            body: page.into_bytes(),
            content_type: "text/html; charset=utf-8",
            location: None,
        }
    }

    /// 302 to `location` (an http(s) URL checked by the caller), with `page` for a client
    /// that does not follow.
    pub(crate) fn redirect(location: &str, page: String) -> Reply {
        Reply {
            location: Some(location.to_owned()),
            ..Reply::html(302, page)
        }
    }

    /// The response tiny_http writes. A header that cannot be written is an error in the
    /// log, never dropped quietly; a redirect whose `Location` cannot be written answers
    /// 200 with its page (which links to the target) rather than a 302 going nowhere.
    pub(crate) fn into_response(self) -> Response<Cursor<Vec<u8>>> {
        let mut status = self.status;
        let mut headers = Vec::with_capacity(2 + CORS.len());
        let mut add = |name: &str, value: &str| match header(name, value) {
            Ok(h) => {
                headers.push(h);
                true
            }
            Err(why) => {
                let shown: String = value.chars().take(200).collect();
                log::error!("response header {name} ({shown:?}) not written: {why}");
                false
            }
        };
        add("Content-Type", self.content_type);
        if let Some(location) = &self.location {
            if !add("Location", location) && status == 302 {
                status = 200;
            }
        }
        for (name, value) in CORS {
            add(name, value);
        }
        let mut response = Response::from_data(self.body).with_status_code(status);
        for h in headers {
            response.add_header(h);
        }
        response
    }
}

/// A header as tiny_http writes it, or why it cannot be: tiny_http holds only ASCII, and a
/// control character (a line break above all) would corrupt the head. A value may hold
/// spaces and tabs.
fn header(name: &str, value: &str) -> Result<Header, &'static str> {
    if !value.is_ascii() {
        return Err("not ASCII");
    }
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err("a control character");
    }
    Header::from_bytes(name.as_bytes(), value.as_bytes()).map_err(|()| "not a header name")
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply::json_status(e.status(), &e.body())
    }
}

#[cfg(test)]
mod tests {
    use super::Reply;

    fn location(reply: Reply) -> (u16, Option<String>) {
        let response = reply.into_response();
        let location = response
            .headers()
            .iter()
            .find(|h| h.field.equiv("Location"))
            .map(|h| h.value.to_string());
        (response.status_code().0, location)
    }

    #[test]
    fn a_redirect_carries_its_location() {
        let to = "https://example.org/v%C3%A9rifi%C3%A9?x=%C3%BC";
        assert_eq!(
            location(Reply::redirect(to, "page".into())),
            (302, Some(to.to_owned()))
        );
    }

    /// What cannot be a header is not written (and logged): never a 302 without its
    /// target, never a line break into the head.
    #[test]
    fn a_location_that_cannot_be_written_is_no_redirect() {
        for bad in [
            "https://example.org/vérifié",
            "https://example.org/\r\nSet-Cookie: a=b",
        ] {
            assert_eq!(
                location(Reply::redirect(bad, "page".into())),
                (200, None),
                "{bad}"
            );
        }
    }
}
