//! tiny_http 0.12.0, patched for mxisd: see `PATCHES.md` beside this crate.
//!
//! A blocking HTTP/1.1 server. An accept thread hands each connection to a thread of its
//! own, which reads whole requests (head and body, within `Limits`) and queues them; the
//! application's worker threads take them with `recv` or `recv_timeout` and `respond`.
//! TLS, Unix sockets and protocol upgrades of the published crate are removed: mxisd sits
//! behind a reverse proxy and needs none of them.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! let limits = tiny_http::Limits {
//!     max_connections: 1024,
//!     request_timeout: Duration::from_secs(10),
//!     keep_alive_timeout: Duration::from_secs(15),
//!     max_body_bytes: 1 << 20,
//! };
//! let rejecter: tiny_http::Rejecter =
//!     Arc::new(|why| tiny_http::Response::from_string(format!("{why:?}")).boxed());
//! let server = tiny_http::Server::from_listener(listener, limits, rejecter).unwrap();
//! for request in server.incoming_requests() {
//!     let _ = request.respond(tiny_http::Response::from_string("hello"));
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use framing::Rejection;
#[doc(hidden)]
pub use framing::{read_request, RequestRead};
pub use request::Request;
pub use response::{Response, ResponseBox};

mod accept;
mod client;
mod common;
mod framing;
mod request;
mod response;
mod util;

/// The main class of this library.
///
/// Destroying this object stops accepting connections. Requests that have already been
/// returned by `recv()` are still answered.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, the accept thread ends
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: SocketAddr,

    // mxisd patch: connections open now, and requests begun but not yet queued
    open: Arc<AtomicUsize>,
    reading: Arc<AtomicUsize>,
}

/// mxisd patch: what a client may take, and how long.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most connections open at once; beyond, a new one is answered
    /// `Rejection::TooManyConnections` and closed.
    pub max_connections: usize,
    /// Time for a whole request (head and body) once its first byte has come, and for a
    /// whole response once its first byte is written. A new connection also has this long
    /// to start its first request.
    pub request_timeout: Duration,
    /// Longest wait for the next request on an idle keep-alive connection.
    pub keep_alive_timeout: Duration,
    /// Largest request body (`Rejection::BodyTooLarge` beyond).
    pub max_body_bytes: usize,
}

/// mxisd patch: builds the answer to a request the connection layer refused. Called on the
/// connection's thread (the accept thread for `TooManyConnections`, once, at start).
pub type Rejecter = Arc<dyn Fn(&Rejection) -> ResponseBox + Send + Sync>;

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// Worker threads share the server.
const _: fn() = || {
    fn shared<T: Sync + Send>() {}
    shared::<Server>();
};

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

impl Server {
    /// Serves the connections of `listener` within `limits`; `rejecter` answers what the
    /// connection layer refuses.
    pub fn from_listener(
        listener: TcpListener,
        limits: Limits,
        rejecter: Rejecter,
    ) -> IoResult<Server> {
        let listening_addr = listener.local_addr()?;
        let close = Arc::new(AtomicBool::new(false));
        let messages = MessagesQueue::with_capacity(8);
        let open = Arc::new(AtomicUsize::new(0));
        let reading = Arc::new(AtomicUsize::new(0));
        let acceptor = accept::Acceptor {
            listener,
            shared: Arc::new(client::Shared {
                limits,
                rejecter,
                messages: messages.clone(),
                open: open.clone(),
                reading: reading.clone(),
            }),
            close: close.clone(),
        };
        thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || acceptor.run())?;
        Ok(Server {
            messages,
            close,
            listening_addr,
            open,
            reading,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> SocketAddr {
        self.listening_addr
    }

    /// mxisd patch: the number of connections open now.
    pub fn num_connections(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// mxisd patch: the number of requests whose head or body is being read: a graceful
    /// stop waits for them (they are in flight) as well as for the queue.
    pub fn requests_being_read(&self) -> usize {
        self.reading.load(Relaxed)
    }

    /// mxisd patch: stops accepting connections; those already accepted are still served.
    pub fn stop_accepting(&self) {
        self.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread.
        let _ = TcpStream::connect_timeout(&self.listening_addr, Duration::from_secs(1));
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.close.load(Relaxed) {
            self.stop_accepting();
        }
    }
}
