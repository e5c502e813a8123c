//! The server: one tiny_http listener, a fixed pool of `http.workers` threads pulling
//! requests from it, and a graceful stop.
//!
//! - Workers get whole requests: tiny_http's connection threads read the head and the body
//!   within `http.maxBodyBytes` and `http.requestTimeout` (the vendored crate's
//!   `Limits`), so a slow client never holds a worker while it sends. What they refuse
//!   (malformed or ambiguous framing, too large, too slow, too many connections) is
//!   answered with the spec's JSON error from `ApiError`, and logged.
//! - A worker writes its response within `http.requestTimeout`; a client that does not
//!   read is cut off then.
//! - At most `http.maxConnections` connections (by default as many as the open-files limit
//!   allows, up to 4,096); the soft limit is raised to the hard one at start.
//! - A handler that panics answers 500 M_UNKNOWN; its worker goes on serving.
//! - If the listener dies, the process stops with a failure so its service manager
//!   restarts it.
//! - Stopping stops accepting connections, lets the workers finish what is queued, being
//!   read or in flight (for at most `GRACE`), then joins them.
//! - One access-log line per request: method, route pattern (never the raw path or query,
//!   which may carry addresses or tokens), status, milliseconds.

use super::{ApiError, Reply, Router};
use crate::cidr::Cidr;
use crate::config::Config;
use crate::config::HttpConfig;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often an idle worker looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// Longest the workers keep serving after a stop was asked.
const GRACE: Duration = Duration::from_secs(10);
/// Default ceiling of `http.maxConnections`: a thread each (tiny_http's connection threads).
const MAX_CONNECTIONS: usize = 4096;

pub struct Server {
    inner: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    addr: SocketAddr,
}

struct Shared<C> {
    /// What handlers are given with each request (the application, for `api`).
    context: Arc<C>,
    router: Router<C>,
    trusted_proxies: Vec<Cidr>,
    stopping: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
}

impl Server {
    /// Binds `server.bindAddress:server.port` and starts the workers, which run `router`'s
    /// handlers with `context`.
    pub fn start<C: Send + Sync + 'static>(
        cfg: &Config,
        context: Arc<C>,
        router: Router<C>,
    ) -> io::Result<Server> {
        let addrs: Vec<SocketAddr> = (cfg.server.bind_address.as_str(), cfg.server.port)
            .to_socket_addrs()?
            .collect();
        let listener = TcpListener::bind(&addrs[..])?;
        let addr = listener.local_addr()?;
        let limits = tiny_http::Limits {
            max_connections: max_connections(&cfg.http),
            request_timeout: cfg.http.request_timeout,
            keep_alive_timeout: cfg.http.keep_alive_timeout,
            max_body_bytes: cfg.http.max_body_bytes,
        };
        let max_body = cfg.http.max_body_bytes;
        let rejecter: tiny_http::Rejecter = Arc::new(move |why| refusal(why, max_body));
        let inner = Arc::new(tiny_http::Server::from_listener(
            listener, limits, rejecter,
        )?);

        let stopping = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            context,
            router,
            trusted_proxies: cfg.http.trusted_proxies.clone(),
            stopping: stopping.clone(),
            failed: failed.clone(),
        });
        let workers = (0..cfg.http.workers)
            .map(|i| {
                let (inner, shared) = (inner.clone(), shared.clone());
                thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || work(&inner, &shared))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Server {
            inner,
            workers,
            stopping,
            failed,
            addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the listener died (the process should exit non-zero and be restarted).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Stops accepting, lets in-flight requests finish, and joins the workers.
    pub fn shutdown(self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.inner.stop_accepting();
        for worker in self.workers {
            let _ = worker.join();
        }
        drop(self.inner);
    }
}

/// The answer to a request tiny_http refused before routing, from `ApiError`; logged with
/// why (the connection cap is logged by the accept thread, which counts refusals).
fn refusal(why: &tiny_http::Rejection, max_body: usize) -> tiny_http::ResponseBox {
    use tiny_http::Rejection;
    let error = match why {
        Rejection::TooManyConnections => ApiError::TooManyConnections,
        Rejection::BadRequest(what) => ApiError::BadRequest(what.to_string()),
        Rejection::UriTooLong => ApiError::UriTooLong,
        Rejection::HeadTooLarge => ApiError::HeadTooLarge,
        Rejection::BodyTooLarge => ApiError::BodyTooLarge(max_body),
        Rejection::Timeout => ApiError::RequestTimeout,
        Rejection::VersionNotSupported => ApiError::HttpVersion,
        Rejection::ExpectationFailed => ApiError::ExpectationFailed,
    };
    if error != ApiError::TooManyConnections {
        log::info!(target: "mxisd::access", "(refused) {error}; connection closed");
    }
    Reply::from(error).into_response().boxed()
}

/// `http.maxConnections`, or as many connections as the open-files limit allows (each
/// holds one descriptor) beside a reserve for the workers' own files and sockets, at most
/// `MAX_CONNECTIONS`. Raises the soft open-files limit to the hard one first.
fn max_connections(http: &HttpConfig) -> usize {
    let files = raise_open_files_limit();
    let reserve = 64 + 4 * http.workers;
    let room = files.saturating_sub(reserve).max(1);
    match http.max_connections {
        Some(max) => {
            if max > room {
                log::warn!(
                    "http.maxConnections is {max}, but the open-files limit ({files}) leaves room for about {room}: beyond that, new connections are refused (503); raise LimitNOFILE"
                );
            }
            max
        }
        None => {
            let max = room.min(MAX_CONNECTIONS);
            if max < 256 {
                log::warn!(
                    "the open-files limit ({files}) leaves room for only {max} connections: raise LimitNOFILE"
                );
            }
            max
        }
    }
}

/// Raises the soft limit of open files to the hard limit; returns the soft limit in force.
fn raise_open_files_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

fn work<C>(server: &tiny_http::Server, shared: &Shared<C>) {
    let mut stop_deadline: Option<Instant> = None;
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            let deadline = *stop_deadline.get_or_insert_with(|| Instant::now() + GRACE);
            if Instant::now() > deadline {
                return;
            }
        }
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => handle(shared, request),
            // Queue drained, and no request still arriving.
            Ok(None) if stop_deadline.is_some() && server.requests_being_read() == 0 => return,
            Ok(None) => {}
            Err(e) if shared.stopping.load(Ordering::SeqCst) => log::debug!("listener closed: {e}"),
            Err(e) => {
                // tiny_http's accept loop ended: we cannot serve anymore.
                log::error!(
                    "listener failed ({e}): stopping so that the service manager restarts mxisd"
                );
                shared.failed.store(true, Ordering::SeqCst);
                let _ = signal_hook::low_level::raise(signal_hook::consts::SIGTERM);
            }
        }
    }
}

fn handle<C>(shared: &Shared<C>, mut raw: tiny_http::Request) {
    let started = Instant::now();
    let _busy = crate::metrics::http::busy();
    let method = raw.method().clone();
    let (reply, label) = match panic::catch_unwind(AssertUnwindSafe(|| dispatch(shared, &mut raw)))
    {
        Ok(outcome) => outcome,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log::error!("{method} request handler panicked: {why}");
            (Reply::from(ApiError::Internal), "(panicked)")
        }
    };
    let status = reply.status;
    if let Err(e) = raw.respond(reply.into_response()) {
        log::info!("{method} {label}: the response could not be written whole: {e}");
    }
    crate::metrics::http::request(method.as_str(), label, status, started.elapsed());
    log::info!(
        target: "mxisd::access",
        "{method} {label} {status} {:.1}ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
}

/// Routes and runs one request; returns the reply and the label for the access log.
fn dispatch<'s, C>(shared: &'s Shared<C>, raw: &mut tiny_http::Request) -> (Reply, &'s str) {
    if *raw.method() == tiny_http::Method::Options {
        return (Reply::json(serde_json::json!({})), "(preflight)");
    }
    let peer = raw.remote_addr().ip();
    let body = raw.take_body();
    let head = (raw.method(), raw.url(), raw.headers());
    let (route, request) =
        match super::route(&shared.router, &shared.trusted_proxies, head, peer, body) {
            Ok(routed) => routed,
            Err(unrouted) => return (unrouted.error.into(), unrouted.label),
        };
    let label = route.pattern.as_str();
    let reply = (route.handler)(&shared.context, &request).unwrap_or_else(|e| {
        if e.status() >= 500 {
            log::warn!("{} {label}: {e}", raw.method());
        }
        Reply::from(e)
    });
    (reply, label)
}
