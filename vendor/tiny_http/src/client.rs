//! mxisd patch: one client connection, served by its own thread (rewritten).
//!
//! The thread reads a whole request, head and body, under one deadline
//! (`Limits::request_timeout`), and only then queues it for the workers: a slow client
//! holds this thread, never a worker. It reads the next request only once the previous one
//! is answered (one request in flight per connection). Between requests it waits at most
//! `Limits::keep_alive_timeout`. What it refuses (`Rejection`) it answers itself, through
//! the server's `Rejecter`, and then closes the connection: after a refused request the
//! rest of the stream cannot be trusted to start a request.

use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::framing::{self, Failure, Rejection};
use crate::request::ResponseWriter;
use crate::util::{MessagesQueue, Socket, SocketReader, Turn};
use crate::{HTTPVersion, Limits, Message, Rejecter, Request};

/// The answer to a `100-continue` expectation, sent once the head is accepted.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// How long, and how much, a refused client may still send after its answer before the
/// connection is closed (closing with unread bytes resets it, which can lose the answer).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// One in a count (of open connections, of requests being read) while it lives.
pub(crate) struct Counted(Arc<AtomicUsize>);

impl Counted {
    pub(crate) fn new(count: &Arc<AtomicUsize>) -> Counted {
        count.fetch_add(1, Ordering::AcqRel);
        Counted(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the connections of a server share.
pub(crate) struct Shared {
    pub(crate) limits: Limits,
    pub(crate) rejecter: Rejecter,
    pub(crate) messages: Arc<MessagesQueue<Message>>,
    /// Connections open now.
    pub(crate) open: Arc<AtomicUsize>,
    /// Requests begun and not yet queued or refused.
    pub(crate) reading: Arc<AtomicUsize>,
}

pub(crate) struct ClientConnection {
    socket: Arc<Socket>,
    reader: BufReader<SocketReader>,
    remote_addr: SocketAddr,
    shared: Arc<Shared>,
    _open: Counted,
}

impl ClientConnection {
    pub(crate) fn new(socket: Arc<Socket>, shared: Arc<Shared>) -> ClientConnection {
        let reader = SocketReader {
            socket: socket.clone(),
            deadline: Instant::now(),
        };
        ClientConnection {
            remote_addr: socket.peer_addr(),
            socket,
            reader: BufReader::with_capacity(1024, reader),
            _open: Counted::new(&shared.open),
            shared,
        }
    }

    /// Serves requests until the client closes, idles too long, or is refused. Returns only
    /// once the last request it queued is answered, so that the connection counts against
    /// `max_connections` for as long as its socket is in use.
    pub(crate) fn serve(mut self) {
        let mut answered: Option<Arc<Turn>> = None;
        loop {
            let next = self.wait_for_request(answered.as_deref());
            // The usual client sends its next request only after the answer, so the turn is
            // already passed and this does not block.
            if let Some(turn) = answered.take() {
                let (written, _) = turn.wait();
                if !written {
                    return; // the answer was cut short: the connection is unusable
                }
            }
            if !next {
                return;
            }
            let reading = Counted::new(&self.shared.reading);
            self.reader.get_mut().deadline = Instant::now() + self.shared.limits.request_timeout;
            let (request, turn, keep_alive) = match self.read_request() {
                Ok(request) => request,
                Err(Failure::Closed) => return,
                Err(Failure::Reject(why)) => return self.reject(&why),
            };
            self.shared.messages.push(request.into());
            drop(reading);
            if !keep_alive {
                turn.wait();
                return;
            }
            answered = Some(turn);
        }
    }

    /// Waits, without reading it, for the next request to start; whether one did. A new
    /// connection has `request_timeout` to start its first request; after that an idle
    /// connection has `keep_alive_timeout`, counted from the previous answer (which may
    /// come after the client's next request, or long after the request).
    fn wait_for_request(&mut self, answering: Option<&Turn>) -> bool {
        let limits = &self.shared.limits;
        let idle = match answering {
            Some(_) => limits.keep_alive_timeout,
            None => limits.request_timeout,
        };
        let mut deadline = Instant::now() + idle;
        loop {
            self.reader.get_mut().deadline = deadline;
            match self.reader.fill_buf() {
                Ok(bytes) => return !bytes.is_empty(),
                Err(e) if e.kind() != ErrorKind::TimedOut => return false, // the client is gone
                Err(_) => {}
            }
            let Some(turn) = answering else {
                return false;
            };
            let (written, answered_at) = turn.wait();
            deadline = answered_at + idle;
            if !written || deadline <= Instant::now() {
                return false;
            }
        }
    }

    /// Reads a whole request: the head, `100 Continue` if the client waits for it, the body.
    fn read_request(&mut self) -> Result<(Request, Arc<Turn>, bool), Failure> {
        let max = self.shared.limits.max_body_bytes;
        let head = framing::read_head(&mut self.reader, max)?;
        if head.expects_continue {
            let deadline = self.reader.get_ref().deadline;
            self.socket.write_all_before(CONTINUE, deadline)?;
        }
        let body = framing::read_body(&mut self.reader, &head, max)?;
        let turn = Turn::new();
        let writer = ResponseWriter::new(
            self.socket.clone(),
            self.shared.limits.request_timeout,
            turn.clone(),
        );
        let keep_alive = head.keep_alive;
        let request = Request::new(
            head.method,
            head.path,
            head.version,
            head.headers,
            body,
            self.remote_addr,
            writer,
        );
        Ok((request, turn, keep_alive))
    }

    /// Answers a refused request and closes the connection, gently.
    fn reject(mut self, why: &Rejection) {
        let answer = rejection_bytes(&self.shared.rejecter, why);
        let deadline = Instant::now() + self.shared.limits.request_timeout;
        if self.socket.write_all_before(&answer, deadline).is_err() {
            return;
        }
        // Read (and drop) what the client still sends for a moment, so that closing does
        // not reset the connection before it has read its answer.
        self.socket.shutdown(Shutdown::Write);
        let reader = self.reader.get_mut();
        reader.deadline = Instant::now() + LINGER;
        let mut scratch = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match reader.socket.read_before(&mut scratch, reader.deadline) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

/// The bytes of the answer to `why`: the rejecter's response, announcing the close.
pub(crate) fn rejection_bytes(rejecter: &Rejecter, why: &Rejection) -> Vec<u8> {
    let mut bytes = Vec::new();
    let response = rejecter(why);
    // Writing into a vector cannot fail.
    let _ = response.raw_print(&mut bytes, HTTPVersion(1, 1), &[], false, true);
    bytes
}
