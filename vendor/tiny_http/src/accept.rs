//! mxisd patch: the accept thread (rewritten). It must outlive anything a client can do:
//!
//! - At `Limits::max_connections` a new connection is answered `TooManyConnections` (503)
//!   at once, without blocking, and closed.
//! - Out of file descriptors (`EMFILE`, `ENFILE`), it frees the spare descriptor it keeps
//!   for this, accepts the waiting connection, refuses it the same way, and takes the spare
//!   again: the client gets an answer, not a hang in the backlog.
//! - A connection whose thread cannot be started (a task limit) is refused and closed.
//! - Transient accept errors (a connection reset before it was accepted, no memory for a
//!   socket buffer) drop that one connection, are logged, and the loop backs off briefly.
//!
//! Only an error that says the listener itself is gone ends the loop; that error, or a
//! panic, reaches the server's `recv` as an error so the application can stop (and its
//! service manager restart it). Stopping the server ends the loop quietly.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{rejection_bytes, ClientConnection, Shared};
use crate::util::{Socket, TaskPool};
use crate::Rejection;

/// Pause after a failed accept or spawn, so that a failure that persists (no memory for a
/// socket, say) does not spin; short, since a flood of new connections waits behind it.
const BACKOFF: Duration = Duration::from_millis(1);
/// At most one warning per this interval for each kind of failure.
const WARN_EVERY: Duration = Duration::from_secs(5);

pub(crate) struct Acceptor {
    pub(crate) listener: TcpListener,
    pub(crate) shared: Arc<Shared>,
    pub(crate) close: Arc<AtomicBool>,
}

impl Acceptor {
    /// Runs the accept loop on this thread until the server closes. If the loop ends any
    /// other way, its error is queued for the workers.
    pub(crate) fn run(self) {
        let messages = self.shared.messages.clone();
        let close = self.close.clone();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| self.accept_loop()));
        if close.load(Ordering::Relaxed) {
            return;
        }
        let error = match outcome {
            Ok(error) => error,
            Err(_) => io::Error::other("the accept thread panicked"),
        };
        log::error!("no longer accepting connections: {error}");
        messages.push(error.into());
    }

    fn accept_loop(self) -> io::Error {
        let pool = TaskPool::new();
        let refusal = rejection_bytes(&self.shared.rejecter, &Rejection::TooManyConnections);
        let max = self.shared.limits.max_connections;
        let mut spare = File::open("/dev/null").ok();
        let mut warnings = Warnings::default();
        loop {
            match self.listener.accept() {
                Ok(_) if self.close.load(Ordering::Relaxed) => return io::Error::other("closed"),
                Ok((tcp, peer)) => {
                    if self.shared.open.load(Ordering::Acquire) >= max {
                        refuse(&tcp, &refusal);
                        warnings.warn("at_cap", || {
                            format!("{max} connections open (the most allowed): refusing new ones with 503")
                        });
                        continue;
                    }
                    if let Err(e) = self.start(tcp, peer, &pool, &refusal) {
                        warnings.warn("start", || format!("could not serve a new connection: {e}"));
                        thread::sleep(BACKOFF);
                    }
                }
                Err(_) if self.close.load(Ordering::Relaxed) => return io::Error::other("closed"),
                Err(e) if out_of_descriptors(&e) => {
                    drop(spare.take());
                    if let Ok((tcp, _)) = self.listener.accept() {
                        refuse(&tcp, &refusal);
                    }
                    spare = File::open("/dev/null").ok();
                    warnings.warn("fds", || {
                        format!("out of file descriptors ({e}): refusing new connections with 503")
                    });
                    thread::sleep(BACKOFF);
                }
                Err(e) if transient(&e) => {
                    warnings.warn("accept", || {
                        format!("a connection failed before it was accepted: {e}")
                    });
                    thread::sleep(BACKOFF);
                }
                Err(e) => return e,
            }
        }
    }

    /// Hands the connection to a thread of the pool; a connection that cannot get one is
    /// refused.
    fn start(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        pool: &TaskPool,
        refusal: &[u8],
    ) -> io::Result<()> {
        // Fails when the peer is already gone.
        let socket = Arc::new(Socket::new(tcp, peer, self.shared.limits.request_timeout)?);
        let connection = ClientConnection::new(socket.clone(), self.shared.clone());
        let spawned = pool.spawn(Box::new(move || connection.serve()));
        if spawned.is_err() {
            refuse(socket.tcp(), refusal);
        }
        spawned
    }
}

/// Answers a connection we will not serve, without blocking, and closes it.
fn refuse(tcp: &TcpStream, answer: &[u8]) {
    let _ = tcp.set_nonblocking(true);
    // A new connection's send buffer takes the short answer whole.
    let _ = (&*tcp).write(answer);
    let _ = tcp.shutdown(Shutdown::Write);
    // What the client already sent is read, so that closing does not reset the connection
    // (which can discard the answer before the client reads it). A request that arrives
    // after this may still meet a reset: the accept thread does not wait for it.
    let mut scratch = [0u8; 2048];
    let _ = (&*tcp).read(&mut scratch);
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Errors that concern one connection or a passing shortage, not the listener (accept(2):
/// "Linux passes already-pending network errors on the new socket as an error code from
/// accept()"; the application should retry).
fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EAGAIN
                | libc::EPROTO
                | libc::EPERM
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::ETIMEDOUT
        )
    )
}

/// Logs each kind of failure at most once per `WARN_EVERY`, with how many were not logged.
#[derive(Default)]
struct Warnings {
    last: Vec<(&'static str, Instant, u64)>,
}

impl Warnings {
    fn warn(&mut self, kind: &'static str, message: impl FnOnce() -> String) {
        let now = Instant::now();
        match self.last.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, at, quiet)) if now.duration_since(*at) < WARN_EVERY => *quiet += 1,
            Some((_, at, quiet)) => {
                log::warn!("{} ({} more like it not logged)", message(), quiet);
                *at = now;
                *quiet = 0;
            }
            None => {
                log::warn!("{}", message());
                self.last.push((kind, now, 0));
            }
        }
    }
}
