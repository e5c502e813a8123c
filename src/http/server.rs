//! The server: one tiny_http listener, a fixed pool of `http.workers` threads pulling
//! requests from it, and a graceful stop.
//!
//! - A handler that panics answers 500 M_UNKNOWN; its worker goes on serving.
//! - Bodies are read within `http.maxBodyBytes` and `http.bodyTimeout`; the same timeout is
//!   the socket read/write timeout of every connection, so no client holds a worker for long.
//! - Stopping shuts the listening socket (no new connections), lets the workers finish what
//!   is queued or in flight (for at most `GRACE`), then joins them.
//! - One access-log line per request: method, route pattern (never the raw path or query,
//!   which may carry addresses or tokens), status, milliseconds.

use super::request::{client_address, read_body};
use super::router::{split, Method, RouteMatch};
use super::{urlencoded, ApiError, Reply, Request, Router};
use crate::app::App;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often an idle worker looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// Longest the workers keep serving after a stop was asked.
const GRACE: Duration = Duration::from_secs(10);

pub struct Server {
    inner: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    addr: SocketAddr,
    listener_fd: i32,
}

struct Shared {
    app: Arc<App>,
    router: Router,
    stopping: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
}

impl Server {
    /// Binds `server.bindAddress:server.port` and starts the workers.
    pub fn start(app: Arc<App>, router: Router) -> io::Result<Server> {
        let cfg = &app.config;
        let addrs: Vec<SocketAddr> = (cfg.server.bind_address.as_str(), cfg.server.port)
            .to_socket_addrs()?
            .collect();
        let listener = TcpListener::bind(&addrs[..])?;
        let addr = listener.local_addr()?;
        let listener_fd = listener.as_raw_fd();
        let inner = tiny_http::Server::from_listener_with_timeout(
            listener,
            None,
            Some(cfg.http.body_timeout),
        )
        .map(Arc::new)
        .map_err(io::Error::other)?;

        let stopping = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            app: app.clone(),
            router,
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
            listener_fd,
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
        // Shutting the listening socket makes new connections fail at once and ends
        // tiny_http's accept loop; connections already accepted are still served.
        // SAFETY: the fd is the listener we bound; tiny_http closes it only after this call
        // makes its accept() fail, so it still refers to our socket here.
        unsafe { libc::shutdown(self.listener_fd, libc::SHUT_RDWR) };
        for worker in self.workers {
            let _ = worker.join();
        }
        drop(self.inner);
    }
}

fn work(server: &tiny_http::Server, shared: &Shared) {
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
            Ok(None) if stop_deadline.is_some() => return, // queue drained
            Ok(None) => {}
            Err(e) if shared.stopping.load(Ordering::SeqCst) => log::debug!("listener closed: {e}"),
            Err(e) => {
                // tiny_http's accept loop ends on any accept error: we cannot serve anymore.
                log::error!(
                    "listener failed ({e}): stopping so that the service manager restarts mxisd"
                );
                shared.failed.store(true, Ordering::SeqCst);
                let _ = signal_hook::low_level::raise(signal_hook::consts::SIGTERM);
            }
        }
    }
}

fn handle(shared: &Shared, mut raw: tiny_http::Request) {
    let started = Instant::now();
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
        log::debug!("could not send the response: {e}");
    }
    log::info!(
        target: "mxisd::access",
        "{method} {label} {status} {:.1}ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
}

/// Routes and runs one request; returns the reply and the label for the access log.
fn dispatch<'s>(shared: &'s Shared, raw: &mut tiny_http::Request) -> (Reply, &'s str) {
    if *raw.method() == tiny_http::Method::Options {
        return (Reply::json(serde_json::json!({})), "(preflight)");
    }
    let (path, query) = raw.url().split_once('?').unwrap_or((raw.url(), ""));
    let Some(segments) = split(path)
        .map(|s| urlencoded::decode(s, false))
        .collect::<Option<Vec<_>>>()
    else {
        return (ApiError::Unrecognized.into(), "(bad path)");
    };
    let query = urlencoded::parse_query(query);
    let Some(method) = Method::from_tiny(raw.method()) else {
        return (ApiError::MethodNotAllowed.into(), "(method)");
    };
    let (route, params) = match shared.router.find(method, &segments) {
        RouteMatch::Found(route, params) => (route, params),
        RouteMatch::WrongMethod => return (ApiError::MethodNotAllowed.into(), "(method)"),
        RouteMatch::NotFound => return (ApiError::Unrecognized.into(), "(unknown)"),
    };
    let label = route.pattern.as_str();
    let http = &shared.app.config.http;
    let body = if method.has_body() {
        match read_body(raw, http.max_body_bytes, http.body_timeout) {
            Ok(body) => body,
            Err(e) => return (e.into(), label),
        }
    } else {
        Vec::new()
    };
    let peer = raw
        .remote_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let forwarded = raw
        .headers()
        .iter()
        .find(|h| h.field.equiv("X-Forwarded-For"))
        .map(|h| h.value.as_str());
    let client = client_address(peer, forwarded, &http.trusted_proxies);
    let request = Request::new(method, client, params, query, raw.headers(), body);
    let reply = (route.handler)(&shared.app, &request).unwrap_or_else(|e| {
        if e.status() >= 500 {
            log::warn!("{} {label}: {e}", raw.method());
        }
        Reply::from(e)
    });
    (reply, label)
}
