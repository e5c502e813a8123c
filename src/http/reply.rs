//! What a handler answers: JSON (most endpoints), an HTML page or a redirect (the token
//! links clicked in e-mails). Every reply carries the CORS headers.

use super::ApiError;
use serde_json::Value;
use std::io::Cursor;
use tiny_http::{Header, Response};

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    content_type: &'static str,
    body: Vec<u8>,
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
    pub fn json_of<T: serde::Serialize + ?Sized>(value: &T) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
            location: None,
        }
    }

    pub fn json_status(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
            location: None,
        }
    }

    pub fn html(status: u16, page: String) -> Reply {
        Reply {
            status,
            content_type: "text/html; charset=utf-8",
            body: page.into_bytes(),
            location: None,
        }
    }

    /// 302 to `url`.
    pub fn redirect(url: String) -> Reply {
        Reply {
            status: 302,
            content_type: "text/plain",
            body: Vec::new(),
            location: Some(url),
        }
    }

    pub fn into_response(self) -> Response<Cursor<Vec<u8>>> {
        let mut response = Response::from_data(self.body).with_status_code(self.status);
        let mut add = |name: &str, value: &str| {
            if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                response.add_header(h);
            }
        };
        add("Content-Type", self.content_type);
        for (name, value) in CORS {
            add(name, value);
        }
        if let Some(url) = &self.location {
            add("Location", url);
        }
        response
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply::json_status(e.status(), &e.body())
    }
}
