use std::io::{self, BufWriter, ErrorKind, Write};

use std::fmt;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::{Socket, Turn};
use crate::{HTTPVersion, Header, Method, Response};

/// Represents an HTTP request made by a client.
///
/// mxisd patch: a `Request` is whole when a worker gets it. The connection thread read its
/// head and its body (within the server's limits and deadline), so a handler never reads
/// from the client and a slow client never holds a worker while it sends. There is one
/// request in flight per connection: the next one is read only once this one's response
/// is written. Protocol upgrades are not supported (`Connection: upgrade` is ignored).
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `respond` being called, an empty response
/// with a 500 status code (internal server error) is sent back to the client, also while
/// a panic unwinds.
pub struct Request {
    body: Vec<u8>,

    // if this writer is empty, then the request has been answered
    response_writer: Option<BufWriter<ResponseWriter>>,

    remote_addr: SocketAddr,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,
}

/// mxisd patch: writes the response to the socket within `timeout` of its first byte, so
/// a client that reads slowly (or not at all) releases the worker at that deadline. When
/// dropped it passes the connection's turn: written whole, or failed. A failed response
/// shuts the socket, which also wakes the connection thread waiting for the next request.
pub(crate) struct ResponseWriter {
    socket: Arc<Socket>,
    timeout: Duration,
    deadline: Option<Instant>,
    failed: bool,
    turn: Arc<Turn>,
}

impl ResponseWriter {
    pub(crate) fn new(socket: Arc<Socket>, timeout: Duration, turn: Arc<Turn>) -> ResponseWriter {
        ResponseWriter {
            socket,
            timeout,
            deadline: None,
            failed: false,
            turn,
        }
    }
}

impl Write for ResponseWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let timeout = self.timeout;
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + timeout);
        let result = self.socket.write_before(buf, deadline);
        self.failed |= result.is_err();
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ResponseWriter {
    fn drop(&mut self) {
        if self.failed {
            self.socket.shutdown(Shutdown::Both);
        }
        self.turn.pass(!self.failed);
    }
}

impl Request {
    /// mxisd patch: a request read whole by the connection thread.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        method: Method,
        path: String,
        http_version: HTTPVersion,
        headers: Vec<Header>,
        body: Vec<u8>,
        remote_addr: SocketAddr,
        writer: ResponseWriter,
    ) -> Request {
        Request {
            body,
            response_writer: Some(BufWriter::with_capacity(1024, writer)),
            remote_addr,
            method,
            path,
            http_version,
            headers,
        }
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// mxisd patch: the body, read whole (empty if the request had none).
    #[inline]
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// mxisd patch: takes the body out of the request, without copying it.
    #[inline]
    pub fn take_body(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.body)
    }

    /// Returns the address of the client that sent this request.
    ///
    /// Note that this is gathered from the socket (mxisd patch: as accept(2) gave it, so it
    /// is always known). If you receive the request from a proxy, this function will return
    /// the address of the proxy and not the address of the actual user.
    #[inline]
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// Sends a response to this request.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), io::Error>
    where
        R: io::Read,
    {
        self.respond_impl(response)
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), io::Error>
    where
        R: io::Read,
    {
        let Some(mut writer) = self.response_writer.take() else {
            return Ok(());
        };
        let do_not_send_body = self.method == Method::Head;
        let result = response
            .raw_print(
                writer.by_ref(),
                self.http_version.clone(),
                &self.headers,
                do_not_send_body,
                false,
            )
            .and_then(|()| writer.flush());
        if result.is_err() {
            // A response cut short leaves the connection unusable.
            writer.get_mut().failed = true;
        }
        Self::ignore_client_closing_errors(result)
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            let response = Response::empty(500);
            let _ = self.respond_impl(response); // ignoring any potential error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
