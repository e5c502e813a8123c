//! Hostile and overloaded clients against the real binary: floods of idle connections at
//! the open-files and thread limits, endless chunk sizes, oversized and trickling heads,
//! trickling bodies, and a client that does not read its answer. After each attack the
//! server answers `GET /_matrix/identity/v2` within 2 s on a new connection, and its memory
//! stays bounded. Short timeouts in the configs keep the suite fast.

use crate::support;
use crate::support::fake_homeserver::{federation_config, v2_token, FakeHomeserver};
use crate::support::{numbered_users, status_line, synapse_sqlite, Mxisd, TempDir, V1_BULK_LOOKUP};
use mxisd::crypto::hash::lookup_hash;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const SOON: Duration = Duration::from_secs(2);
/// The answer at the connection cap, exactly.
const TOO_MANY: &str = r#"{"errcode":"M_UNKNOWN","error":"too many connections"}"#;

/// Opens `n` connections to the server and sends nothing on them.
fn open_idle(s: &Mxisd, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            TcpStream::connect_timeout(&s.addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connection {i} not accepted: {e}\n{}", s.log()))
        })
        .collect()
}

/// How the server treated idle connections: (held open, answered and closed, answers),
/// once that no longer changes (the server deals with a flood one connection at a time).
fn sort_out(conns: &[TcpStream]) -> (usize, usize, Vec<String>) {
    for conn in conns {
        conn.set_nonblocking(true).unwrap();
    }
    let mut answers: Vec<Option<String>> = vec![None; conns.len()];
    let mut held = conns.len();
    loop {
        thread::sleep(Duration::from_millis(500));
        let before = held;
        for (conn, answer) in conns.iter().zip(answers.iter_mut()) {
            if answer.is_some() {
                continue;
            }
            let mut buf = [0u8; 4096];
            match (&*conn).read(&mut buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Ok(n) => *answer = Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) => *answer = Some(format!("error: {e}")),
            }
            held -= 1;
        }
        if held == before {
            let answers: Vec<String> = answers.into_iter().flatten().collect();
            return (held, answers.len(), answers);
        }
    }
}

fn assert_refused_with_503(answers: &[String]) {
    for answer in answers {
        assert!(status_line(answer).starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.ends_with(TOO_MANY), "{answer}");
    }
}

#[test]
fn idle_connections_beyond_the_cap_are_refused_and_the_listener_lives() {
    // systemd's default soft limit is 1024; hard and soft at 256 here, so nothing to raise.
    let s = Mxisd::start_wrapped(
        "http:\n  workers: 2\n  requestTimeout: 30\n",
        &["prlimit", "--nofile=256:256", "--"],
    );
    // The default cap: what 256 files leave beside a reserve of 64 + 4 per worker.
    let cap = 256 - (64 + 4 * 2);
    let flood = open_idle(&s, cap + 100);
    let (held, refused, answers) = sort_out(&flood);
    assert_eq!(held, cap, "{}", s.log());
    assert_eq!(refused, 100);
    assert_refused_with_503(&answers);
    assert!(s.wait_for_log("refusing new ones with 503"), "{}", s.log());
    drop(flood);
    assert!(s.answers_within(SOON), "{}", s.log());
}

#[test]
fn a_connection_counts_until_its_request_is_answered_even_half_closed() {
    // Lookups wait 2 s for a database that never answers: requests stay queued a while.
    let silent = support::Silent::start();
    let s = Mxisd::start(&format!(
        "http:\n  workers: 1\n  maxConnections: 3\nsynapseSql:\n  enabled: true\n  type: postgresql\n  connection: '//127.0.0.1:{}/synapse?user=synapse'\n  timeout: 2\n",
        silent.port
    ));
    let lookup = "GET /_matrix/identity/api/v1/lookup?medium=email&address=a%40example.org HTTP/1.1\r\nHost: x\r\n\r\n";
    // Each client sends its request and closes its sending side: it still waits for the
    // answer, and its socket is still open.
    let waiting: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut conn = s.connect();
            conn.write_all(lookup.as_bytes()).unwrap();
            conn.shutdown(std::net::Shutdown::Write).unwrap();
            conn
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let (held, refused, answers) = sort_out(&open_idle(&s, 1));
    assert_eq!((held, refused), (0, 1), "the cap of 3 was not reached");
    assert_refused_with_503(&answers);
    for conn in waiting {
        conn.set_nonblocking(false).unwrap();
        let mut answer = String::new();
        let _ = (&conn).read_to_string(&mut answer);
        assert!(status_line(&answer).starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("synapseSql"), "{answer}");
    }
    assert!(s.answers_within(SOON));
}

#[test]
fn the_open_files_soft_limit_is_raised_to_the_hard_one() {
    let s = Mxisd::start_wrapped("", &["prlimit", "--nofile=256:2048", "--"]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.pid())).unwrap();
    let files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(files.split_whitespace().nth(3), Some("2048"), "{files}");
}

#[test]
fn out_of_file_descriptors_new_connections_are_refused_and_the_listener_lives() {
    // A cap above what the files allow: accept(2) itself fails with EMFILE.
    let s = Mxisd::start_wrapped(
        "http:\n  workers: 2\n  requestTimeout: 30\n  maxConnections: 1000\n",
        &["prlimit", "--nofile=256:256", "--"],
    );
    let flood = open_idle(&s, 400);
    let (held, refused, answers) = sort_out(&flood);
    assert!((150..256).contains(&held), "held {held}\n{}", s.log());
    assert_eq!(held + refused, 400);
    assert_refused_with_503(&answers);
    assert!(s.wait_for_log("out of file descriptors"), "{}", s.log());
    drop(flood);
    assert!(s.answers_within(SOON), "{}", s.log());
}

/// Tasks (threads and processes) of a user, system-wide: what RLIMIT_NPROC counts.
fn tasks_of(uid: u32) -> usize {
    let mut tasks = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let owner = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
        if owner == Some(uid) {
            tasks += status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(1);
        }
    }
    tasks
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn connections_without_a_thread_are_refused_and_the_listener_lives() {
    // Root ignores the task limit: mxisd runs as nobody, which it counts against; only root
    // can start it as another user.
    assert!(nix_is_root(), "needs root, to run mxisd as another user");
    const CONFIG: &str = "http:\n  workers: 2\n  requestTimeout: 30\n";
    let as_nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ];
    // How many threads mxisd runs when idle, to leave it room for only a few more.
    let idle = {
        let s = Mxisd::start_wrapped(CONFIG, &as_nobody);
        s.wait_hash_index();
        tasks_of(65534)
    };
    let limit = format!("--nproc={}:{}", idle + 4, idle + 4);
    let wrapper: Vec<&str> = as_nobody
        .iter()
        .copied()
        .chain(["prlimit", &limit, "--"])
        .collect();
    let s = Mxisd::start_wrapped(CONFIG, &wrapper);
    let flood = open_idle(&s, 60);
    let (held, refused, answers) = sort_out(&flood);
    assert!((4..20).contains(&held), "held {held}\n{}", s.log());
    assert_eq!(held + refused, 60);
    assert_refused_with_503(&answers);
    assert!(
        s.wait_for_log("could not serve a new connection"),
        "{}",
        s.log()
    );
    drop(flood);
    assert!(s.answers_within(SOON), "{}", s.log());
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Sends `head`, then `filler` (ignoring a write that fails once the server answered and
/// closed), and returns the answer.
fn send_and_read(s: &Mxisd, head: &str, filler: Vec<u8>) -> String {
    let conn = s.connect();
    let mut writer = conn.try_clone().unwrap();
    writer.write_all(head.as_bytes()).unwrap();
    let sender = thread::spawn(move || {
        let _ = writer.write_all(&filler);
    });
    let mut answer = Vec::new();
    let _ = (&conn).read_to_end(&mut answer);
    drop(conn);
    sender.join().unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn endless_chunk_size_digits_are_refused_at_once() {
    let s = Mxisd::start("http:\n  workers: 2\n  requestTimeout: 20\n");
    let before = s.rss_kib();
    let head =
        format!("POST {V1_BULK_LOOKUP} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    let started = Instant::now();
    let answer = send_and_read(&s, &head, vec![b'1'; 8 << 20]);
    assert!(status_line(&answer).starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("chunk-size line too long"), "{answer}");
    // Refused on the 33rd digit, not at the request timeout.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let after = s.rss_kib();
    eprintln!("RSS: {before} KiB before, {after} KiB after 8 MiB of chunk-size digits");
    assert!(
        after < before + 16 * 1024,
        "RSS {after} KiB, {before} KiB before"
    );
    assert!(s.answers_within(SOON));
}

/// A request head with `lines` header lines of `size` bytes each.
fn big_head(lines: usize, size: usize) -> String {
    let mut head = String::from("GET /_matrix/identity/v2 HTTP/1.1\r\nHost: x\r\n");
    for i in 0..lines {
        head.push_str(&format!("X-{i:04}: {}\r\n", "a".repeat(size - 8)));
    }
    head
}

#[test]
fn heads_over_32_kib_are_refused_and_memory_stays_bounded() {
    let s = Mxisd::start("http:\n  requestTimeout: 20\n");
    let before = s.rss_kib();
    // Each client sends header lines within the per-line and count limits, 2 MiB in all
    // (what a connection could make the server hold before the 32 KiB budget).
    let clients: Vec<_> = (0..60)
        .map(|_| {
            let conn = s.connect();
            let mut writer = conn.try_clone().unwrap();
            let sender = thread::spawn(move || {
                let _ = writer.write_all(big_head(126, 16 * 1024 - 2).as_bytes());
            });
            (conn, sender)
        })
        .collect();
    let mut peak = 0;
    for (conn, sender) in clients {
        let mut answer = Vec::new();
        let _ = (&conn).read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(status_line(&answer).starts_with("HTTP/1.1 431"), "{answer}");
        peak = peak.max(s.rss_kib());
        drop(conn);
        sender.join().unwrap();
    }
    eprintln!("RSS: {before} KiB before, {peak} KiB at most while 60 clients sent 2 MiB heads");
    assert!(
        peak < before + 32 * 1024,
        "RSS {peak} KiB, {before} KiB before"
    );
    assert!(s.answers_within(SOON));
}

#[test]
fn trickling_heads_are_cut_at_the_request_timeout() {
    let s = Mxisd::start("http:\n  workers: 2\n  requestTimeout: 2\n");
    let before = s.rss_kib();
    // Each client sends a large head (under the budget), then a header line every 300 ms:
    // progress enough to reset any per-read timeout, never a whole request.
    let mut conns: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut conn = s.connect();
            conn.write_all(big_head(2, 15 * 1024).as_bytes()).unwrap();
            conn
        })
        .collect();
    let started = Instant::now();
    let mut peak = s.rss_kib();
    while started.elapsed() < Duration::from_secs(4) {
        for conn in &mut conns {
            let _ = conn.write_all(b"X-Slow: 1\r\n");
        }
        peak = peak.max(s.rss_kib());
        thread::sleep(Duration::from_millis(300));
    }
    // Workers were never involved.
    assert!(s.answers_within(SOON));
    for conn in conns {
        conn.set_nonblocking(true).unwrap();
        let mut answer = vec![0u8; 4096];
        let n = (&conn).read(&mut answer).unwrap_or(0);
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(status_line(&answer).starts_with("HTTP/1.1 408"), "{answer}");
    }
    // About 30 KiB a connection, not megabytes.
    eprintln!("RSS: {before} KiB before, {peak} KiB at most with 100 trickling heads");
    assert!(
        peak < before + 32 * 1024,
        "RSS {peak} KiB, {before} KiB before"
    );
}

#[test]
fn trickling_bodies_do_not_take_the_workers() {
    let s = Mxisd::start("http:\n  workers: 2\n  requestTimeout: 3\n");
    let head =
        format!("POST {V1_BULK_LOOKUP} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{{");
    let mut conns: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut conn = s.connect();
            conn.write_all(head.as_bytes()).unwrap();
            conn
        })
        .collect();
    let trickle = thread::spawn(move || {
        for _ in 0..8 {
            for conn in &mut conns {
                let _ = conn.write_all(b" ");
            }
            thread::sleep(Duration::from_millis(500));
        }
        conns
    });
    thread::sleep(Duration::from_millis(600));
    assert!(s.answers_within(SOON), "{}", s.log());
    for conn in trickle.join().unwrap() {
        let mut answer = String::new();
        let _ = (&conn).read_to_string(&mut answer);
        assert!(status_line(&answer).starts_with("HTTP/1.1 408"), "{answer}");
    }
}

/// A connection whose receive buffer is small, so the kernel buffers little of an answer
/// the client does not read.
fn connect_with_small_receive_buffer(addr: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 expected: {addr}")
    };
    // SAFETY: plain socket calls on a descriptor this function owns, with structs of the
    // sizes passed; the descriptor is handed to TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let size: libc::c_int = 4096;
        let set = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(set, 0);
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let connected = libc::connect(
            fd,
            &sin as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(connected, 0);
        TcpStream::from_raw_fd(fd)
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_client_that_reads_slowly_is_cut_off_at_the_deadline() {
    // A hashed lookup of 80,000 addresses, all known: an answer of about 6 MB, more than
    // the kernel buffers of a connection hold (4 MiB at most on Linux).
    const USERS: usize = 80_000;
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let dir = TempDir::new();
    let db = synapse_sqlite(&dir, &numbered_users(USERS));
    // One worker: while it writes to the slow reader, nobody else is served.
    let s = Mxisd::start(&format!(
        "http:\n  workers: 1\n  requestTimeout: 2\n  maxBodyBytes: 8388608\nlookup:\n  maxAddresses: {USERS}\nsynapseSql:\n  enabled: true\n  type: sqlite\n  connection: '{db}'\n{}",
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    ));
    s.wait_hash_index();
    let token = v2_token(&s, &hs, "reader");
    let pepper = s.pepper(&token);
    let hashes: Vec<String> = (0..USERS)
        .map(|i| {
            format!(
                "\"{}\"",
                lookup_hash(&format!("user{i}@example.org"), "email", &pepper)
            )
        })
        .collect();
    let body = format!(
        r#"{{"algorithm":"sha256","pepper":"{pepper}","addresses":[{}]}}"#,
        hashes.join(",")
    );
    let mut conn = connect_with_small_receive_buffer(s.addr);
    let head = format!(
        "POST /_matrix/identity/v2/lookup HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body.as_bytes()).unwrap();
    // Reads 1 KiB every 100 ms (the whole answer would take ten minutes) until told to
    // read what is left at once.
    let slow = Arc::new(AtomicBool::new(true));
    let reading = slow.clone();
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            let want = if reading.load(Ordering::SeqCst) {
                1024
            } else {
                buf.len()
            };
            match conn.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if reading.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(100));
            }
        }
    });
    // The worker is freed at the deadline (2 s), not when the client has read it all.
    assert!(s.answers_within(Duration::from_secs(5)), "{}", s.log());
    assert!(s.wait_for_log("could not be written whole"), "{}", s.log());
    slow.store(false, Ordering::SeqCst);
    let got = reader.join().unwrap();
    let text = String::from_utf8_lossy(&got);
    let (head, body) = text.split_once("\r\n\r\n").expect("an answer head");
    assert!(status_line(head).starts_with("HTTP/1.1 200"), "{head}");
    // A large answer is sent chunked: a whole one ends with the last, empty chunk.
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    assert!(
        !body.ends_with("\r\n0\r\n\r\n"),
        "read all {} bytes: not cut off",
        body.len()
    );
}
