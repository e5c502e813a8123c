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

/// A request no route takes: the error answered, and the access log's label for it.
pub(crate) struct Unrouted {
    pub error: ApiError,
    pub label: &'static str,
}

/// What the server's `dispatch` does with a request before its handler runs, and all it
/// does (the fuzz target `request` runs it through [`route_read`]): the path split and
/// percent-decoded, the query, the method, the route, the client address. The route and
/// the `Request` its handler gets; or why none takes it.
pub(crate) fn route<'r, 'h, C>(
    router: &'r Router<C>,
    trusted: &[crate::cidr::Cidr],
    (method, url, headers): (&tiny_http::Method, &str, &'h [tiny_http::Header]),
    peer: std::net::IpAddr,
    body: Vec<u8>,
) -> Result<(&'r router::Route<C>, Request<'h>), Unrouted> {
    use router::RouteMatch;
    let unrouted = |error, label| Unrouted { error, label };
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let segments = router::split(path)
        .map(|s| crate::urlencoded::decode(s, false))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| unrouted(ApiError::Unrecognized, "(bad path)"))?;
    let query = crate::urlencoded::parse_query(query);
    let method = Method::from_tiny(method)
        .ok_or_else(|| unrouted(ApiError::MethodNotAllowed, "(method)"))?;
    let (route, params) = match router.find(method, &segments) {
        RouteMatch::Found(route, params) => (route, params),
        RouteMatch::WrongMethod => return Err(unrouted(ApiError::MethodNotAllowed, "(method)")),
        RouteMatch::NotFound => return Err(unrouted(ApiError::Unrecognized, "(unknown)")),
    };
    let client = request::client_address(peer, headers, trusted);
    let request = Request::new(method, client, params, query, headers, body);
    Ok((route, request))
}

/// For `crate::fuzz` (issue 25): [`route`] on a request as tiny_http's framing read it from
/// bytes rather than a connection. `then` gets the route's pattern and the `Request` a
/// handler would get; a request no route takes is the error `dispatch` answers.
#[doc(hidden)]
pub(crate) fn route_read<C, R>(
    router: &Router<C>,
    trusted: &[crate::cidr::Cidr],
    raw: &tiny_http::RequestRead<'_>,
    peer: std::net::IpAddr,
    then: impl FnOnce(&str, &Request) -> R,
) -> Result<R, ApiError> {
    let head = (&raw.method, raw.path.as_str(), &raw.headers[..]);
    let (route, request) =
        route(router, trusted, head, peer, raw.body.clone()).map_err(|u| u.error)?;
    Ok(then(&route.pattern, &request))
}
