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

/// For `crate::fuzz` (issue 25): what the server's `dispatch` does with a request before
/// its handler runs, from the request as tiny_http's framing read it from bytes rather
/// than a connection: the path split and percent-decoded, the query, the method, the
/// route, the client address. `then` gets the route's pattern and the `Request` a handler
/// would get; a request no route takes is the error `dispatch` answers.
#[doc(hidden)]
pub(crate) fn route_read<C, R>(
    router: &Router<C>,
    trusted: &[crate::cidr::Cidr],
    raw: &tiny_http::RequestRead<'_>,
    peer: std::net::IpAddr,
    then: impl FnOnce(&str, &Request) -> R,
) -> Result<R, ApiError> {
    use router::RouteMatch;
    let (path, query) = raw.path.split_once('?').unwrap_or((&raw.path, ""));
    let segments = router::split(path)
        .map(|s| crate::urlencoded::decode(s, false))
        .collect::<Option<Vec<_>>>()
        .ok_or(ApiError::Unrecognized)?;
    let query = crate::urlencoded::parse_query(query);
    let method = Method::from_tiny(&raw.method).ok_or(ApiError::MethodNotAllowed)?;
    let (route, params) = match router.find(method, &segments) {
        RouteMatch::Found(route, params) => (route, params),
        RouteMatch::WrongMethod => return Err(ApiError::MethodNotAllowed),
        RouteMatch::NotFound => return Err(ApiError::Unrecognized),
    };
    let client = request::client_address(peer, &raw.headers, trusted);
    let request = Request::new(
        method,
        client,
        params,
        query,
        &raw.headers,
        raw.body.clone(),
    );
    Ok(then(&route.pattern, &request))
}
