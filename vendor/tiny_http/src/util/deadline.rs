//! mxisd patch: a connection's socket, read and written under deadlines.
//!
//! A deadline bounds a whole exchange (a request's head and body, or a response), not one
//! system call: a client that sends or reads a byte now and then cannot stretch it. The
//! socket's own timeouts (`SO_RCVTIMEO`, `SO_SNDTIMEO`) do the waking; they are changed only
//! when the one in place would overshoot the deadline by more than `SLACK` (or would wake
//! far too often), so an ordinary request costs no extra system call.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How far past its deadline a blocked read or write may wake up.
const SLACK: Duration = Duration::from_millis(100);
/// A socket timeout shorter than this is raised when more time is left, so that a long wait
/// does not wake up every few milliseconds.
const SHORT: Duration = Duration::from_secs(1);

/// The connection's socket, shared by the connection thread (which reads requests) and the
/// worker answering the current request (which writes the response).
pub(crate) struct Socket {
    tcp: TcpStream,
    /// The peer's address, as accept(2) gave it.
    peer: SocketAddr,
    /// The `SO_RCVTIMEO` and `SO_SNDTIMEO` in place, in milliseconds.
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
}

impl Socket {
    /// Wraps a connection accepted from `peer`; `timeout` is its first read and write
    /// timeout.
    pub(crate) fn new(tcp: TcpStream, peer: SocketAddr, timeout: Duration) -> io::Result<Socket> {
        let timeout = timeout.max(Duration::from_millis(1));
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let millis = timeout.as_millis() as u64;
        Ok(Socket {
            tcp,
            peer,
            read_timeout: AtomicU64::new(millis),
            write_timeout: AtomicU64::new(millis),
        })
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub(crate) fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub(crate) fn shutdown(&self, how: Shutdown) {
        let _ = self.tcp.shutdown(how);
    }

    /// Reads what has arrived, waiting at most until `deadline`; `TimedOut` past it.
    pub(crate) fn read_before(&self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        loop {
            let left = time_left(deadline)?;
            fit(&self.read_timeout, left, |t| {
                self.tcp.set_read_timeout(Some(t))
            })?;
            match (&self.tcp).read(buf) {
                Err(e) if retry(&e) => continue, // the loop checks the deadline again
                result => return result,
            }
        }
    }

    /// Writes some of `buf`, waiting at most until `deadline`; `TimedOut` past it.
    pub(crate) fn write_before(&self, buf: &[u8], deadline: Instant) -> io::Result<usize> {
        loop {
            let left = time_left(deadline)?;
            fit(&self.write_timeout, left, |t| {
                self.tcp.set_write_timeout(Some(t))
            })?;
            match (&self.tcp).write(buf) {
                Err(e) if retry(&e) => continue,
                result => return result,
            }
        }
    }

    /// Writes all of `buf` before `deadline`.
    pub(crate) fn write_all_before(&self, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_before(buf, deadline)? {
                0 => return Err(ErrorKind::WriteZero.into()),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }
}

fn time_left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(ErrorKind::TimedOut, "deadline passed"));
    }
    Ok(left)
}

/// A socket timeout expired (Linux reports it as `WouldBlock`) or a signal came.
fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// Sets the socket timeout kept in `current` to `left` when the one in place would wake up
/// too late, or too often.
fn fit(
    current: &AtomicU64,
    left: Duration,
    set: impl FnOnce(Duration) -> io::Result<()>,
) -> io::Result<()> {
    let in_place = Duration::from_millis(current.load(Ordering::Relaxed));
    if in_place > left + SLACK || (in_place < SHORT && in_place < left) {
        let timeout = left.max(Duration::from_millis(1));
        set(timeout)?;
        current.store(timeout.as_millis() as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// Reads the socket under the deadline of the exchange in progress: the connection
/// thread's reader, set anew for each request.
pub(crate) struct SocketReader {
    pub(crate) socket: std::sync::Arc<Socket>,
    pub(crate) deadline: Instant,
}

impl Read for SocketReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.read_before(buf, self.deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, Socket) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        (
            client,
            Socket::new(server, peer, Duration::from_secs(10)).unwrap(),
        )
    }

    #[test]
    fn a_trickling_peer_cannot_stretch_the_deadline() {
        let (mut client, socket) = pair();
        let writer = std::thread::spawn(move || {
            for _ in 0..20 {
                if client.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let started = Instant::now();
        let deadline = started + Duration::from_millis(500);
        let mut got = 0;
        let mut buf = [0u8; 16];
        let err = loop {
            match socket.read_before(&mut buf, deadline) {
                Ok(0) => panic!("unexpected end"),
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(got >= 2, "read {} bytes", got);
        // Woken within the slack of the deadline, though the socket timeout was 10 s.
        assert!(started.elapsed() < Duration::from_millis(500) + 2 * SLACK);
        socket.shutdown(Shutdown::Both);
        writer.join().unwrap();
    }

    #[test]
    fn timeouts_change_only_when_they_would_overshoot_or_wake_too_often() {
        let set = std::cell::Cell::new(None);
        let current = AtomicU64::new(10_000);
        let record = |t| {
            set.set(Some(t));
            Ok(())
        };
        fit(&current, Duration::from_secs(15), record).unwrap();
        assert_eq!(set.take(), None, "10 s wakes before a 15 s deadline: kept");
        fit(&current, Duration::from_secs(10), record).unwrap();
        assert_eq!(set.take(), None, "within the slack: kept");
        fit(&current, Duration::from_secs(4), record).unwrap();
        assert_eq!(set.take(), Some(Duration::from_secs(4)));
        current.store(50, Ordering::Relaxed);
        fit(&current, Duration::from_secs(15), record).unwrap();
        assert_eq!(
            set.take(),
            Some(Duration::from_secs(15)),
            "50 ms would spin"
        );
    }
}
