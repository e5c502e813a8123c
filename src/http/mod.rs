//! The HTTP side: a blocking tiny_http server whose requests are taken by a fixed pool of
//! worker threads; routing (v1 and v2 paths share handlers); request extraction with body
//! limits; replies with CORS; and `ApiError`, the only place that knows statuses and errcodes.
//!
//! Knows requests and error codes, no domain logic: handlers live in `api`.

mod error;
mod reply;
mod request;
mod router;
mod server;

pub use error::ApiError;
pub use reply::Reply;
pub use request::Request;
pub use router::{Handler, Method, Router};
pub use server::Server;
