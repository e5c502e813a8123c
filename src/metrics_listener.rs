//! The metrics listener, on `metrics.bindAddress:metrics.port` (never the API's port, so
//! the API's proxy does not expose it), with one thread of its own: a scrape never waits
//! for the API's workers, and never takes one.
//!
//! - `GET /metrics`: what `metrics` counted, in Prometheus' text format, and what is read
//!   when scraped: the workers busy, the delivery queue's depth and oldest item (from the
//!   state, within [`DEADLINE`]; `mxisd_state_up` says whether it answered).
//! - `GET /ready`: 200 when the state and every identity store answer a cheap check (a
//!   trivial query; a lookup of an address no one has) within [`DEADLINE`], else 503 with
//!   one line per check naming what failed. Liveness stays `/_matrix/identity/v2` on the
//!   API's port.
//!
//! A check runs on a thread of its own, waited for at most [`DEADLINE`]; one that does not
//! answer is left to end by its backend's own timeout, and is not started again while it
//! runs (the next scrape says it is still running), so a hung database costs one thread
//! per check, not one per scrape.
//!
//! The second user of tiny_http beside `http`: this listener's needs (two plain-text
//! pages, one thread, no routes, no JSON errors) are not the API server's.

use crate::config::MetricsConfig;
use crate::lookup::Chain;
use crate::metrics::text::{Kind, Text, CONTENT_TYPE};
use crate::state::State;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest a scrape or a readiness answer waits for the state and the stores.
pub const DEADLINE: Duration = Duration::from_secs(3);
/// How often the listener's thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// The delivery queue's kinds named in the metrics; others (a newer build's) are `other`.
const QUEUE_KINDS: [&str; 2] = ["invite-mail", "onbind"];

/// What the listener reads from the server it watches.
pub trait Host: Send + Sync + 'static {
    fn state(&self) -> &State;
    fn lookup(&self) -> &Chain;
    /// `http.workers`.
    fn workers(&self) -> usize;
}

pub struct Listener {
    server: Arc<tiny_http::Server>,
    thread: JoinHandle<()>,
    stopping: Arc<AtomicBool>,
}

impl Listener {
    /// Stops accepting and ends the listener's thread (a check still running is left to
    /// its own timeout).
    pub fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.server.stop_accepting();
        let _ = self.thread.join();
    }
}

/// The checks of one listener: the names of what is checked, and which are running.
struct Checks<H> {
    host: Arc<H>,
    /// "state", then "store <name>" per identity store, in the chain's order.
    names: Vec<String>,
    running: Vec<Arc<AtomicBool>>,
    /// The queue's depth being read, at most once at a time.
    queue_running: Arc<AtomicBool>,
}

/// Starts the listener when `metrics.enabled`; `Ok(None)` when not.
pub fn start<H: Host>(cfg: &MetricsConfig, host: Arc<H>) -> io::Result<Option<Listener>> {
    if !cfg.enabled {
        return Ok(None);
    }
    let addrs: Vec<SocketAddr> = (cfg.bind_address.as_str(), cfg.port)
        .to_socket_addrs()?
        .collect();
    let listener = TcpListener::bind(&addrs[..])?;
    let addr = listener.local_addr()?;
    let limits = tiny_http::Limits {
        max_connections: 16,
        request_timeout: Duration::from_secs(10),
        keep_alive_timeout: Duration::from_secs(15),
        max_body_bytes: 1024,
    };
    let rejecter: tiny_http::Rejecter =
        Arc::new(|why| plain(400, &format!("refused: {why:?}\n")).boxed());
    let server = Arc::new(tiny_http::Server::from_listener(
        listener, limits, rejecter,
    )?);
    let mut names = vec!["state".to_owned()];
    names.extend(
        host.lookup()
            .store_names()
            .into_iter()
            .map(|n| format!("store {n}")),
    );
    let checks = Checks {
        running: names.iter().map(|_| Arc::default()).collect(),
        names,
        host,
        queue_running: Arc::default(),
    };
    let stopping = Arc::new(AtomicBool::new(false));
    let thread = {
        let (server, stopping) = (server.clone(), stopping.clone());
        thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(&server, &stopping, &checks))?
    };
    log::info!("metrics on http://{addr}/metrics, readiness on http://{addr}/ready");
    Ok(Some(Listener {
        server,
        thread,
        stopping,
    }))
}

fn serve<H: Host>(server: &tiny_http::Server, stopping: &AtomicBool, checks: &Checks<H>) {
    while !stopping.load(Ordering::SeqCst) {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => {
                let response = answer(request.method(), request.url(), checks);
                if let Err(e) = request.respond(response) {
                    log::debug!("metrics: answer not written: {e}");
                }
            }
            Ok(None) => {}
            Err(e) => {
                if !stopping.load(Ordering::SeqCst) {
                    log::error!("metrics listener failed: {e}");
                }
                return;
            }
        }
    }
}

type Response = tiny_http::Response<io::Cursor<Vec<u8>>>;

fn answer<H: Host>(method: &tiny_http::Method, url: &str, checks: &Checks<H>) -> Response {
    let path = url.split('?').next().unwrap_or_default();
    let get = matches!(method, tiny_http::Method::Get | tiny_http::Method::Head);
    match (get, path) {
        (true, "/metrics") => plain(200, &scrape(checks)),
        (true, "/ready") => {
            let (ready, body) = readiness(checks);
            plain(if ready { 200 } else { 503 }, &body)
        }
        (false, "/metrics" | "/ready") => plain(405, "GET only\n"),
        _ => plain(404, "not found: /metrics and /ready are served here\n"),
    }
}

fn plain(status: u16, body: &str) -> Response {
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE) {
        response.add_header(h);
    }
    response
}

/// Runs `check` on a thread of its own unless the last one started under `running` is
/// still running (`None` then); its answer comes on the receiver.
fn spawn<T: Send + 'static>(
    running: &Arc<AtomicBool>,
    check: impl FnOnce() -> T + Send + 'static,
) -> Option<mpsc::Receiver<T>> {
    if running.swap(true, Ordering::SeqCst) {
        return None;
    }
    let (tx, rx) = mpsc::channel();
    let flag = running.clone();
    let started = thread::Builder::new()
        .name("metrics-check".into())
        .spawn(move || {
            let _ = tx.send(check());
            flag.store(false, Ordering::SeqCst);
        });
    match started {
        Ok(_) => Some(rx),
        Err(e) => {
            running.store(false, Ordering::SeqCst);
            log::warn!("metrics: no thread for a check: {e}");
            None
        }
    }
}

/// Each check's outcome: `Ok` or what failed.
fn readiness<H: Host>(checks: &Checks<H>) -> (bool, String) {
    let deadline = Instant::now() + DEADLINE;
    let pending: Vec<Option<mpsc::Receiver<Result<(), String>>>> = (0..checks.names.len())
        .map(|i| {
            let host = checks.host.clone();
            spawn(&checks.running[i], move || match i {
                0 => host.state().ping().map_err(|e| e.to_string()),
                _ => host.lookup().check_store(i - 1).map_err(|e| e.reason),
            })
        })
        .collect();
    let mut ready = true;
    let mut body = String::new();
    for (name, rx) in checks.names.iter().zip(pending) {
        let outcome = match rx {
            None => Err("its previous check has not answered yet".to_owned()),
            Some(rx) => match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {} s", DEADLINE.as_secs())),
            },
        };
        match outcome {
            Ok(()) => body.push_str(&format!("{name}: ok\n")),
            Err(why) => {
                ready = false;
                body.push_str(&format!("{name}: FAILED: {}\n", why.replace('\n', " ")));
            }
        }
    }
    let head = if ready { "ready\n" } else { "not ready\n" };
    (ready, format!("{head}{body}"))
}

/// The metrics page: what was counted, then what is read now.
fn scrape<H: Host>(checks: &Checks<H>) -> String {
    let mut t = Text::new();
    t.family(
        "mxisd_build_info",
        Kind::Gauge,
        "The running version of mxisd (always 1).",
    );
    t.int(
        "mxisd_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    crate::metrics::render(&mut t);
    t.family(
        "mxisd_http_workers",
        Kind::Gauge,
        "Worker threads of the API server (http.workers).",
    );
    t.int("mxisd_http_workers", &[], checks.host.workers() as u64);
    t.family(
        "mxisd_http_workers_busy",
        Kind::Gauge,
        "Workers of the API server handling a request now.",
    );
    t.signed(
        "mxisd_http_workers_busy",
        &[],
        crate::metrics::http::busy_now(),
    );
    queue(&mut t, checks);
    t.finish()
}

/// The delivery queue's depth and oldest item by kind, read within `DEADLINE`; when the
/// state does not answer, `mxisd_state_up` is 0 and the queue's figures are left out.
fn queue<H: Host>(t: &mut Text, checks: &Checks<H>) {
    let host = checks.host.clone();
    let answered = spawn(&checks.queue_running, move || {
        host.state().delivery_queue_depth()
    })
    .and_then(|rx| rx.recv_timeout(DEADLINE).ok())
    .and_then(Result::ok);
    t.family(
        "mxisd_state_up",
        Kind::Gauge,
        "Whether the state database answered this scrape's query of the delivery queue in time (1) or not (0).",
    );
    t.int("mxisd_state_up", &[], u64::from(answered.is_some()));
    let Some(rows) = answered else {
        return;
    };
    let now = crate::now_ms();
    // (kind, items, oldest) with every known kind present, unknown ones as `other`.
    let mut by_kind: Vec<(&str, i64, Option<i64>)> =
        QUEUE_KINDS.iter().map(|k| (*k, 0, None)).collect();
    for row in &rows {
        let kind = QUEUE_KINDS
            .iter()
            .find(|k| **k == row.kind)
            .copied()
            .unwrap_or("other");
        let at = match by_kind.iter().position(|(k, ..)| *k == kind) {
            Some(at) => at,
            None => {
                by_kind.push((kind, 0, None));
                by_kind.len() - 1
            }
        };
        let entry = &mut by_kind[at];
        entry.1 += row.items;
        entry.2 = Some(entry.2.map_or(row.oldest_ms, |o| o.min(row.oldest_ms)));
    }
    t.family(
        "mxisd_delivery_queue_items",
        Kind::Gauge,
        "Deliveries queued and not done yet (invite mails, onbind calls), by kind, on every instance sharing the state.",
    );
    for (kind, items, _) in &by_kind {
        t.signed("mxisd_delivery_queue_items", &[("kind", kind)], *items);
    }
    t.family(
        "mxisd_delivery_queue_oldest_age_seconds",
        Kind::Gauge,
        "Seconds since the oldest queued delivery of a kind was queued (0 when none is).",
    );
    for (kind, _, oldest) in &by_kind {
        let age = oldest.map_or(0.0, |o| (now - o).max(0) as f64 / 1e3);
        t.real(
            "mxisd_delivery_queue_oldest_age_seconds",
            &[("kind", kind)],
            age,
        );
    }
}
