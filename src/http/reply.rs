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

    pub(crate) fn into_response(self) -> Response<Cursor<Vec<u8>>> {
        let mut response = Response::from_data(self.body).with_status_code(self.status);
        let mut add = |name: &str, value: &str| {
            if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                response.add_header(h);
            }
        };
        add("Content-Type", self.content_type);
        if let Some(location) = &self.location {
            add("Location", location);
        }
        for (name, value) in CORS {
            add(name, value);
        }
        response
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply::json_status(e.status(), &e.body())
    }
}
