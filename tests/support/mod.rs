//! Test support: temporary directories, the real `mxisd` binary started on a free loopback
//! port with a generated config, an HTTP client that returns statuses instead of errors, and
//! the addresses of the test services (from `tests/services/config.sh`).

pub mod balancer;
pub mod fake_homeserver;
pub mod mail;
pub mod own_dns;
pub mod pg_cluster;
pub mod services;
pub mod slapd;
pub mod tcp_proxy;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub const BIN: &str = env!("CARGO_BIN_EXE_mxisd");
/// The v1 bulk lookup, which several tests use as a plain endpoint with a body.
pub const V1_BULK_LOOKUP: &str = "/_matrix/identity/api/v1/bulk_lookup";

/// The test data kept in the project (`tests/data/`: signing vectors, sample key stores).
pub fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// `<MXISD_TEST_RUN>-` when `tests/run.sh` set it, for the names of what the tests create:
/// `tests/leftovers.sh` finds by it the processes of this run that hide their environment
/// (nginx, PostgreSQL and Chromium write their process titles over it).
pub fn run_marker() -> String {
    std::env::var("MXISD_TEST_RUN")
        .map(|m| format!("{m}-"))
        .unwrap_or_default()
}

/// A loopback port free now, for a server that others must know before it starts. Ports come
/// from 20000–32767, below the kernel's ephemeral range (Debian: 32768–60999): a port from
/// `bind(0)` stays free only until the next outgoing connection or `bind(0)` of the many tests
/// running meanwhile is handed it, and the kernel never hands these out. A counter, started
/// at a per-process offset, keeps two tests from getting the same one.
pub fn free_port() -> u16 {
    const FIRST: usize = 20_000;
    const COUNT: usize = 12_000;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let start = std::process::id() as usize * 7919 % COUNT;
    for _ in 0..COUNT {
        let port = (FIRST + (start + NEXT.fetch_add(1, Ordering::SeqCst)) % COUNT) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + COUNT)
}

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "mxisd-it-{}{}-{}-{nanos}",
            run_marker(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The config every test server starts from; `extra` adds top-level sections (its own
/// `storage` replaces the SQLite database in `dir`).
pub fn config_text(dir: &TempDir, key_path: &Path, extra: &str) -> String {
    let storage = if extra.starts_with("storage:") || extra.contains("\nstorage:") {
        String::new()
    } else {
        format!(
            "storage:\n  provider:\n    sqlite:\n      database: '{}'\n",
            dir.join("mxisd.db").display()
        )
    };
    // Lookups go on to other identity servers by default (loopback is in
    // `lookup.recursive.allowedCidr`): names are asked of the test dnsmasq, which knows only
    // the test names, so no test sends DNS (or anything after it) off the machine.
    // Last, so that the lines of `extra` stay where tests expect them.
    let federation = if extra.starts_with("federation:") || extra.contains("\nfederation:") {
        String::new()
    } else {
        let newline = if extra.is_empty() || extra.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        format!(
            "{newline}federation:\n  resolver: '127.0.0.1:{}'\n",
            services::get("DNS_PORT")
        )
    };
    format!(
        "matrix:\n  domain: example.org\nserver:\n  port: 0\nkey:\n  path: '{}'\n{storage}{extra}{federation}",
        key_path.display(),
    )
}

/// A running `mxisd` process, killed when dropped.
pub struct Mxisd {
    child: Child,
    pub addr: SocketAddr,
    pub dir: TempDir,
    log: Arc<Mutex<String>>,
}

impl Mxisd {
    /// Starts mxisd in a fresh directory, keys created there.
    pub fn start(extra: &str) -> Mxisd {
        let dir = TempDir::new();
        let keys = dir.join("keys");
        Mxisd::start_in(dir, &keys, extra)
    }

    pub fn start_in(dir: TempDir, key_path: &Path, extra: &str) -> Mxisd {
        let config = dir.join("mxisd.yaml");
        std::fs::write(&config, config_text(&dir, key_path, extra)).unwrap();
        Mxisd::spawn(dir, &config)
    }

    /// Starts mxisd through `wrapper`, a command that runs the rest of its command line
    /// (`prlimit --nofile=256:256 --`, `setpriv --reuid=…`). A wrapper may drop privileges:
    /// the directory is writable by every user, and holds the binary, which a checkout in
    /// a private directory would not let another user run.
    pub fn start_wrapped(extra: &str, wrapper: &[&str]) -> Mxisd {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let bin = dir.join("mxisd");
        if std::fs::hard_link(BIN, &bin).is_err() {
            std::fs::copy(BIN, &bin).unwrap();
        }
        let keys = dir.join("keys");
        let config = dir.join("mxisd.yaml");
        std::fs::write(&config, config_text(&dir, &keys, extra)).unwrap();
        let mut command = Command::new(wrapper[0]);
        command.args(&wrapper[1..]).arg(&bin);
        Mxisd::spawn_with(dir, &config, command)
    }

    /// Starts mxisd on an existing config file and waits until it listens.
    pub fn spawn(dir: TempDir, config: &Path) -> Mxisd {
        Mxisd::spawn_with(dir, config, Command::new(BIN))
    }

    /// Runs `command` (mxisd, or a wrapper of it) with `-c config`.
    fn spawn_with(dir: TempDir, config: &Path, mut command: Command) -> Mxisd {
        let mut child = command
            .arg("-c")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mxisd");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        // Drain stderr for the whole life of the process, so logging never blocks it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                std::thread::sleep(Duration::from_millis(200));
                panic!("mxisd did not start; its log:\n{}", log.lock().unwrap());
            }
        };
        Mxisd {
            child,
            addr,
            dir,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> Response {
        Response::from(agent().get(self.url(path)).call())
    }

    pub fn post(&self, path: &str, body: &str) -> Response {
        Response::from(
            agent()
                .post(self.url(path))
                .header("Content-Type", "application/json")
                .send(body),
        )
    }

    /// Everything mxisd logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The lookup pepper, asked with a v2 access token.
    pub fn pepper(&self, token: &str) -> String {
        let r = self.get(&format!(
            "/_matrix/identity/v2/hash_details?access_token={token}"
        ));
        r.json()["lookup_pepper"].as_str().unwrap().to_owned()
    }

    /// Waits until the hash index is built (it is built after mxisd starts listening;
    /// hashed lookups are 503 until then).
    pub fn wait_hash_index(&self) {
        assert!(self.wait_for_log("hash index ready"), "{}", self.log());
    }

    /// The process id (wrappers exec mxisd, so it is mxisd's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Whether `GET /_matrix/identity/v2` is answered 200 on a new connection within
    /// `within` (asking again while it is refused or unanswered).
    pub fn answers_within(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(left.max(Duration::from_millis(1))))
                .build()
                .into();
            if let Ok(r) = agent.get(self.url("/_matrix/identity/v2")).call() {
                if r.status() == 200 {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits until the log contains `needle` (logging runs in the background).
    pub fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A raw TCP connection to the server, for what an HTTP client will not send.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
    }
}

impl Drop for Mxisd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A listener where a refused name leads: had the guard let the call through, it would
/// have landed here (loopback only: a private address would send packets off the machine).
pub fn canary(ip: &str) -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// No connection reached `canary`.
pub fn untouched(canary: &std::net::TcpListener) -> bool {
    matches!(canary.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// `agent()` that answers a redirect as it is, so its `Location` can be read.
pub fn agent_without_redirects() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .max_redirects(0)
        .build()
        .into()
}

/// Status, headers and body of an HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a spec-shaped error: status, errcode, and a JSON content type.
    pub fn assert_error(&self, status: u16, errcode: &str) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text);
        let body = self.json();
        assert_eq!(body["errcode"], errcode, "body: {}", self.text);
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "body: {}",
            self.text
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        body
    }
}

impl From<Result<ureq::http::Response<ureq::Body>, ureq::Error>> for Response {
    fn from(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Response {
        let mut r = r.expect("HTTP request");
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        Response {
            status: r.status().as_u16(),
            headers,
            text: r.body_mut().read_to_string().unwrap_or_default(),
        }
    }
}

/// A server that accepts connections and never says a word; counts what it accepted.
/// Dropped, it closes its listener and every connection it held.
pub struct Silent {
    pub port: u16,
    pub accepted: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Silent {
    pub fn start() -> Silent {
        Silent::start_on(0)
    }

    /// On `port` (0: any free one), e.g. where a stopped server listened.
    pub fn start_on(port: u16) -> Silent {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (count, stopped) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            // The connections are kept open (and silent) until the Silent is dropped.
            let mut held = Vec::new();
            for conn in listener.incoming().flatten() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                count.fetch_add(1, Ordering::SeqCst);
                held.push(conn);
            }
        });
        Silent {
            port,
            accepted,
            stop,
        }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then ends and closes everything.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Synapse's table of 3PIDs, with the index Synapse gives it (without it, a bulk lookup of
/// 10,000 addresses scans the table 10,000 times: 30 s in a debug build).
pub const SYNAPSE_SCHEMA: &str = "CREATE TABLE user_threepids (user_id TEXT NOT NULL, medium TEXT NOT NULL, address TEXT NOT NULL, validated_at BIGINT NOT NULL, added_at BIGINT NOT NULL); CREATE UNIQUE INDEX medium_address ON user_threepids (medium, address)";

/// `n` users `@user<i>:example.org` with the e-mail `user<i>@example.org`, as rows of
/// (user_id, medium, address).
pub fn numbered_users(n: usize) -> Vec<(String, &'static str, String)> {
    (0..n)
        .map(|i| {
            (
                format!("@user{i}:example.org"),
                "email",
                format!("user{i}@example.org"),
            )
        })
        .collect()
}

/// A Synapse-shaped SQLite database with `rows` of (user_id, medium, address); its path.
pub fn synapse_sqlite(dir: &TempDir, rows: &[(String, &str, String)]) -> String {
    let path = dir.join("homeserver.db");
    let mut db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(SYNAPSE_SCHEMA).unwrap();
    let tx = db.transaction().unwrap();
    for (user, medium, address) in rows {
        tx.execute(
            "INSERT INTO user_threepids VALUES (?1, ?2, ?3, 0, 0)",
            rusqlite::params![user, medium, address],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    path.display().to_string()
}

/// The first line of a raw HTTP answer.
pub fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

/// Sends raw bytes on a fresh connection and returns everything the server answers.
pub fn raw_exchange(server: &Mxisd, request: &[u8]) -> String {
    let mut stream = server.connect();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Runs the binary to completion with `args`; returns (exit code, stdout, stderr).
pub fn run(args: &[&str], cwd: Option<&Path>) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
