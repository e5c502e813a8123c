//! Method + path → handler. Patterns are literal segments and `{name}` parameters; when
//! several patterns match a path, the one with the fewest parameters wins, so
//! `/pubkey/isvalid` beats `/pubkey/{keyId}` whatever the order of registration.

use super::{ApiError, Reply, Request};

/// A handler: a plain function of the server's context (the application, for `api`) and
/// the request. `http` knows the shape only, no handler and no application.
pub type Handler<C> = fn(&C, &Request) -> Result<Reply, ApiError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub(crate) fn from_tiny(m: &tiny_http::Method) -> Option<Method> {
        match m {
            tiny_http::Method::Get | tiny_http::Method::Head => Some(Method::Get),
            tiny_http::Method::Post => Some(Method::Post),
            tiny_http::Method::Put => Some(Method::Put),
            tiny_http::Method::Delete => Some(Method::Delete),
            _ => None,
        }
    }
}

pub(crate) struct Route<C> {
    pub method: Method,
    /// The pattern as registered: what the access log shows instead of the real path.
    pub pattern: String,
    segments: Vec<Segment>,
    pub handler: Handler<C>,
}

enum Segment {
    Literal(String),
    Param(String),
}

/// A path's parameters, by name, in the order of the pattern.
type Params = Vec<(String, String)>;

pub(crate) enum RouteMatch<'r, C> {
    Found(&'r Route<C>, Params),
    WrongMethod,
    NotFound,
}

pub struct Router<C> {
    routes: Vec<Route<C>>,
}

impl<C> Default for Router<C> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

impl<C> Router<C> {
    pub fn new() -> Router<C> {
        Router::default()
    }

    pub fn add(&mut self, method: Method, pattern: &str, handler: Handler<C>) {
        let segments = split(pattern)
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => Segment::Param(name.to_owned()),
                    None => Segment::Literal(s.to_owned()),
                },
            )
            .collect();
        self.routes.push(Route {
            method,
            pattern: pattern.to_owned(),
            segments,
            handler,
        });
    }

    /// `path` is already percent-decoded segment by segment.
    pub(crate) fn find<S: AsRef<str>>(&self, method: Method, path: &[S]) -> RouteMatch<'_, C> {
        let mut best: Option<(&Route<C>, Params)> = None;
        let mut path_known = false;
        for route in &self.routes {
            let Some(params) = route.matches(path) else {
                continue;
            };
            path_known = true;
            if route.method != method {
                continue;
            }
            if best.as_ref().is_none_or(|(_, p)| params.len() < p.len()) {
                best = Some((route, params));
            }
        }
        match best {
            Some((route, params)) => RouteMatch::Found(route, params),
            None if path_known => RouteMatch::WrongMethod,
            None => RouteMatch::NotFound,
        }
    }
}

impl<C> Route<C> {
    fn matches<S: AsRef<str>>(&self, path: &[S]) -> Option<Vec<(String, String)>> {
        if self.segments.len() != path.len() {
            return None;
        }
        let mut params = Vec::new();
        for (segment, actual) in self.segments.iter().zip(path.iter().map(AsRef::as_ref)) {
            match segment {
                Segment::Literal(lit) if lit == actual => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => params.push((name.clone(), actual.to_owned())),
            }
        }
        Some(params)
    }
}

/// The non-empty segments of a path: `/a//b/` and `/a/b` are the same route.
pub(crate) fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &(), _: &Request) -> Result<Reply, ApiError> {
        Err(ApiError::Internal)
    }

    fn path(p: &str) -> Vec<String> {
        split(p).map(str::to_owned).collect()
    }

    #[test]
    fn literals_beat_parameters_and_methods_are_told_apart() {
        let mut r = Router::new();
        r.add(Method::Get, "/v2/pubkey/{keyId}", ok);
        r.add(Method::Get, "/v2/pubkey/isvalid", ok);
        r.add(Method::Post, "/v2/lookup", ok);
        match r.find(Method::Get, &path("/v2/pubkey/isvalid")) {
            RouteMatch::Found(route, params) => {
                assert_eq!(route.pattern, "/v2/pubkey/isvalid");
                assert!(params.is_empty());
            }
            _ => panic!("no match"),
        }
        match r.find(Method::Get, &path("/v2/pubkey/ed25519:0")) {
            RouteMatch::Found(route, params) => {
                assert_eq!(route.pattern, "/v2/pubkey/{keyId}");
                assert_eq!(params, vec![("keyId".to_owned(), "ed25519:0".to_owned())]);
            }
            _ => panic!("no match"),
        }
        assert!(matches!(
            r.find(Method::Get, &path("/v2/lookup")),
            RouteMatch::WrongMethod
        ));
        assert!(matches!(
            r.find(Method::Get, &path("/v2/nothing")),
            RouteMatch::NotFound
        ));
        assert!(matches!(
            r.find(Method::Post, &path("/v2/lookup/")),
            RouteMatch::Found(..)
        ));
    }
}
