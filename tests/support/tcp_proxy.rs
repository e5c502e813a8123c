//! A TCP proxy of the tests' own, in front of a real server, that can go silent on some of
//! its connections without closing them: the network partition in which bytes are taken
//! and never answered (the kernel of the proxy still acknowledges them, so the client's
//! TCP timeouts never fire).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct TcpProxy {
    pub port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    /// Connections numbered below this that sent the marker go silent.
    frozen_below: AtomicUsize,
    next: AtomicUsize,
    stop: AtomicBool,
    marker: &'static [u8],
}

impl TcpProxy {
    /// Forwards connections on a free loopback port to `upstream`. A connection is marked
    /// when its client sends `marker`.
    pub fn start(upstream: SocketAddr, marker: &'static [u8]) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            frozen_below: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            marker,
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let id = s.next.fetch_add(1, Ordering::SeqCst);
                let marked = Arc::new(AtomicBool::new(false));
                for (from, to, watch) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        true,
                    ),
                    (server, client, false),
                ] {
                    let (s, marked) = (s.clone(), marked.clone());
                    std::thread::spawn(move || pipe(from, to, id, &marked, watch, &s));
                }
            }
        });
        TcpProxy { port, shared }
    }

    /// The marked connections open now stop forwarding, both ways, and stay open; later
    /// connections are forwarded.
    pub fn freeze_marked(&self) {
        let open = self.shared.next.load(Ordering::SeqCst);
        self.shared.frozen_below.store(open, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    id: usize,
    marked: &AtomicBool,
    watch: bool,
    s: &Shared,
) {
    let mut buf = [0u8; 16 * 1024];
    from.set_read_timeout(Some(Duration::from_millis(50))).ok();
    loop {
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        let frozen = || marked.load(Ordering::SeqCst) && id < s.frozen_below.load(Ordering::SeqCst);
        if frozen() {
            // Silent, and open: the bytes that come are read (acknowledged) and dropped.
            let _ = from.read(&mut buf);
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        };
        if watch && buf[..n].windows(s.marker.len()).any(|w| w == s.marker) {
            marked.store(true, Ordering::SeqCst);
        }
        if frozen() {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}
