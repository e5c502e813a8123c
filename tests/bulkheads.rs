//! Bulkheads (`http.backendWorkers`): a backend that stops answering holds at most its
//! share of the workers. While it is frozen, the endpoints that do not need it still
//! answer, and a call to it past the share is refused at once (503 naming it); once it
//! answers again, so does mxisd, without a restart. Asserted as an order (what returned
//! while what was still outstanding), never as a timing.

use crate::support::fake_homeserver::{federation_config, v2_token, FakeHomeserver};
use crate::support::free_port;
use crate::support::services::{ensure_up, get};
use crate::support::slapd::OwnSlapd;
use crate::support::{Mxisd, Response, TempDir};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const BOB: &str = "/_matrix/identity/api/v1/lookup?medium=email&address=bob%40example.org";

/// Four workers, two of which may wait on one backend; the store's own timeout is long
/// (25 s, under the test client's 30 s), so that the calls it holds stay outstanding for
/// as long as the test looks (they end when the backend answers again).
const WORKERS: &str = "http:\n  workers: 4\n  backendWorkers: 2\n";

/// A lookup of bob on a thread of its own: its answer comes on the receiver when it is
/// done (the answer itself from the handle).
fn lookup_in_background(
    s: &Arc<Mxisd>,
    done: &std::sync::mpsc::Sender<usize>,
    n: usize,
) -> JoinHandle<Response> {
    let (s, done) = (s.clone(), done.clone());
    std::thread::spawn(move || {
        let r = s.get(BOB);
        let _ = done.send(n);
        r
    })
}

/// Fires `n` lookups of bob, each on its own thread.
fn fire(s: &Arc<Mxisd>, n: usize) -> (Vec<Option<JoinHandle<Response>>>, Receiver<usize>) {
    let (tx, rx) = channel();
    let handles = (0..n)
        .map(|i| Some(lookup_in_background(s, &tx, i)))
        .collect();
    (handles, rx)
}

/// Asserts that `r` is the bulkhead's refusal of store `store`.
fn assert_refused(r: &Response, store: &str) {
    let body = r.assert_error(503, "M_UNKNOWN");
    assert!(
        body["error"].as_str().unwrap_or_default().contains(store),
        "{body}"
    );
}

/// The endpoints that need no identity store answer, each while the lookups held by the
/// frozen backend are still outstanding (`outstanding` has no news).
fn others_answer(s: &Mxisd, hs: &FakeHomeserver, outstanding: &Receiver<usize>, who: &str) {
    let status = s.get("/_matrix/identity/v2");
    assert_eq!(status.status, 200, "{}", status.text);
    let key = s.get("/_matrix/identity/v2/pubkey/ed25519:0");
    assert_eq!(key.status, 200, "{}", key.text);
    assert!(key.json()["public_key"].is_string(), "{}", key.text);
    // An account (the fake homeserver vouches for it), then hash_details with its token:
    // the state database and the hash index, no identity store.
    let token = v2_token(s, hs, who);
    assert!(!s.pepper(&token).is_empty());
    assert!(
        outstanding.try_recv().is_err(),
        "the held lookups are still outstanding while the others answered"
    );
}

/// Sends `signal` to the process whose pid is in `pid_file`.
fn signal(pid_file: &std::path::Path, signal: &str) {
    let pid = std::fs::read_to_string(pid_file).expect("slapd's pid file");
    let ok = std::process::Command::new("kill")
        .args([signal, pid.trim()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {signal} {pid}");
}

/// Continues the frozen slapd when dropped, also when the test fails (a stopped slapd
/// ignores the SIGTERM its own guard sends).
struct Thaw(std::path::PathBuf);

impl Drop for Thaw {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", pid.trim()])
                .status();
        }
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_frozen_directory_holds_only_its_share_of_the_workers() {
    ensure_up();
    let dir = TempDir::new();
    // A slapd of this test's own: the shared one is never stopped.
    let slapd = OwnSlapd::start(&dir, "3895");
    let pid_file = dir.join("ldap").join("slapd.pid");
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = Arc::new(Mxisd::start(&format!(
        "{WORKERS}ldap:\n  enabled: true\n  connection:\n    host: '127.0.0.1'\n    port: {}\n    bindDn: '{}'\n    bindPassword: '{}'\n    baseDNs: ['ou=people,{}']\n    timeout: 25\n  attribute:\n    uid:\n      value: uid\n{}",
        slapd.port,
        get("LDAP_ADMIN_DN"),
        get("LDAP_ADMIN_PASSWORD"),
        get("LDAP_BASE"),
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    )));
    s.wait_hash_index();
    assert_eq!(s.get(BOB).json()["mxid"], "@bob:example.org");

    signal(&pid_file, "-STOP");
    let thaw = Thaw(pid_file.clone());
    // Three lookups, two places: two wait on the frozen directory, one is refused at once.
    let (mut handles, done) = fire(&s, 3);
    let first = done.recv().expect("a lookup ended");
    let refused = handles[first]
        .take()
        .expect("once")
        .join()
        .expect("no panic");
    assert_refused(&refused, "ldap");
    // The others are held, and a fourth is refused at once too.
    assert_refused(&s.get(BOB), "ldap");
    others_answer(&s, &hs, &done, "frozen_ldap");
    assert!(
        s.wait_for_log(
            "identity store ldap is busy: 2 workers already wait on it (http.backendWorkers)"
        ),
        "{}",
        s.log()
    );
    assert!(s.log().contains("(http.backendWorkers)"), "{}", s.log());

    // Thawed: the held lookups get their answer, and new ones do, with no restart.
    signal(&pid_file, "-CONT");
    drop(thaw);
    for h in handles.iter_mut().filter_map(Option::take) {
        let r = h.join().expect("no panic");
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["mxid"], "@bob:example.org", "{}", r.text);
    }
    assert_eq!(s.get(BOB).json()["mxid"], "@bob:example.org");
}

/// What a backend of the test's own answers a request (its request line): whether it is
/// counted and held while answering is off, and the JSON answer.
type Answers = fn(&str) -> (bool, &'static str);

/// The REST backend's answer: bob, found; every request counted and held.
fn rest_store(_: &str) -> (bool, &'static str) {
    (
        true,
        r#"{"lookup":{"medium":"email","address":"bob@example.org","id":{"type":"localpart","value":"bob"}}}"#,
    )
}

/// A backend of the test's own: it reads each request, then answers it as `answers` says,
/// a held one only once `answering` is set; until then it holds it, as a backend that
/// stopped answering. Counts the held requests it read.
struct Backend {
    port: u16,
    read: Arc<AtomicUsize>,
    answering: Arc<(Mutex<bool>, Condvar)>,
}

impl Backend {
    fn start(answers: Answers) -> Backend {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let read = Arc::new(AtomicUsize::new(0));
        let answering = Arc::new((Mutex::new(true), Condvar::new()));
        let (count, gate) = (read.clone(), answering.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (count, gate) = (count.clone(), gate.clone());
                std::thread::spawn(move || serve(conn, answers, &count, &gate));
            }
        });
        Backend {
            port,
            read,
            answering,
        }
    }

    fn answer(&self, yes: bool) {
        let (lock, cvar) = &*self.answering;
        *lock.lock().expect("not poisoned") = yes;
        cvar.notify_all();
    }

    /// Waits until it has read `n` requests (a condition, however long it takes).
    fn wait_read(&self, n: usize) {
        while self.read.load(Ordering::SeqCst) < n {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One request from `reader`, body and all: its request line (None once the client closed).
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut request_line = String::new();
    let mut length = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if request_line.is_empty() {
            request_line = line.clone();
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(request_line)
}

/// Waits until `answering` is on.
fn wait_answering(answering: &(Mutex<bool>, Condvar)) {
    let (lock, cvar) = answering;
    let mut on = lock.lock().expect("not poisoned");
    while !*on {
        on = cvar.wait(on).expect("not poisoned");
    }
}

/// Writes a 200 with the JSON `answer`; whether it went.
fn reply(conn: &mut TcpStream, answer: &str) -> bool {
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
        answer.len()
    );
    conn.write_all(reply.as_bytes()).is_ok()
}

/// One connection: each request read, then answered as `answers` says (a held one counted,
/// and answered once answering is on).
fn serve(
    conn: TcpStream,
    answers: Answers,
    count: &AtomicUsize,
    answering: &(Mutex<bool>, Condvar),
) {
    let mut reader = BufReader::new(conn.try_clone().expect("a second handle"));
    let mut conn = conn;
    while let Some(line) = read_request(&mut reader) {
        let (held, answer) = answers(&line);
        if held {
            count.fetch_add(1, Ordering::SeqCst);
            wait_answering(answering);
        }
        if !reply(&mut conn, answer) {
            return;
        }
    }
}

/// `mxisd_backend_refused_total{backend="<backend>"}` on the metrics page at `port`.
fn refused_total(port: u16, backend: &str) -> u64 {
    let page = crate::support::agent()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .expect("the metrics page")
        .body_mut()
        .read_to_string()
        .expect("its text");
    let series = format!("mxisd_backend_refused_total{{backend=\"{backend}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("no {series} in:\n{page}"))
        .parse()
        .expect("a count")
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_rest_backend_that_stops_answering_holds_only_its_share_of_the_workers() {
    ensure_up();
    let backend = Backend::start(rest_store);
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let metrics = free_port();
    let s = Arc::new(Mxisd::start(&format!(
        "{WORKERS}metrics:\n  enabled: true\n  port: {metrics}\nrest:\n  enabled: true\n  host: 'http://127.0.0.1:{}'\n  timeout: 25\n{}",
        backend.port,
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    )));
    assert_eq!(s.get(BOB).json()["mxid"], "@bob:example.org");
    assert_eq!(backend.read.load(Ordering::SeqCst), 1);
    assert_eq!(refused_total(metrics, "rest"), 0);

    backend.answer(false);
    // Two lookups wait on the backend (both read by it: both places are taken) ...
    let (mut handles, done) = fire(&s, 2);
    backend.wait_read(3);
    // ... so a third is refused at once, without reaching the backend.
    assert_refused(&s.get(BOB), "rest");
    assert_eq!(
        backend.read.load(Ordering::SeqCst),
        3,
        "the refused one never reached it"
    );
    // Counted, under its backend only.
    assert_eq!(refused_total(metrics, "rest"), 1);
    assert_eq!(refused_total(metrics, "ldap"), 0);
    others_answer(&s, &hs, &done, "silent_rest");
    assert!(
        s.wait_for_log(
            "identity store rest is busy: 2 workers already wait on it (http.backendWorkers)"
        ),
        "{}",
        s.log()
    );

    // Answering again: the held lookups end found, and new ones are answered.
    backend.answer(true);
    for h in handles.iter_mut().filter_map(Option::take) {
        let r = h.join().expect("no panic");
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["mxid"], "@bob:example.org", "{}", r.text);
    }
    assert_eq!(s.get(BOB).json()["mxid"], "@bob:example.org");
}

/// A psql session holding `tables` of database `db` locked until it is dropped (or
/// `release` is called): every statement on them waits, as on a stalled database.
struct Locked(std::process::Child);

impl Locked {
    fn hold(db: &str, tables: &str) -> Locked {
        let mut child = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                get("PG_PORT"),
                "-U",
                get("PG_USER"),
                "-d",
                db,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-qAt"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("psql");
        let mut stdin = child.stdin.take().expect("psql's stdin");
        writeln!(
            stdin,
            "BEGIN;\nLOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE;\nSELECT 'locked';"
        )
        .expect("to psql");
        child.stdin = Some(stdin);
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("psql's stdout"))
            .read_line(&mut line)
            .expect("from psql");
        assert_eq!(line.trim(), "locked");
        Locked(child)
    }

    /// Commits (the locks go) and waits for psql to end.
    fn release(mut self) {
        if let Some(mut stdin) = self.0.stdin.take() {
            let _ = writeln!(stdin, "COMMIT;");
        }
        let _ = self.0.wait();
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Registers `localpart` (of the fake homeserver) with `s`, on a thread of its own.
fn register_in_background(
    s: &Arc<Mxisd>,
    hs: &FakeHomeserver,
    localpart: &str,
    done: &std::sync::mpsc::Sender<usize>,
    n: usize,
) -> JoinHandle<Response> {
    let name = format!("127.0.0.1:{}", hs.port);
    let body = serde_json::json!({
        "access_token": format!("user:@{localpart}:{name}"),
        "token_type": "Bearer",
        "matrix_server_name": name,
        "expires_in": 3600,
    });
    let (s, done) = (s.clone(), done.clone());
    std::thread::spawn(move || {
        let r = s.post("/_matrix/identity/v2/account/register", &body.to_string());
        let _ = done.send(n);
        r
    })
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_stalled_state_database_holds_only_its_share_of_the_workers() {
    use crate::support::services::{fresh_database, pg_connection, psql_on};
    ensure_up();
    let db = fresh_database("bulkheads");
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = Arc::new(Mxisd::start(&format!(
        "storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{}'\n      timeout: 25\n{WORKERS}memory:\n  enabled: true\n  identities:\n    - username: bob\n      threepids:\n        - medium: email\n          address: bob@example.org\n{}",
        pg_connection(&db),
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    )));
    s.wait_hash_index();
    v2_token(&s, &hs, "before");

    // Registrations write accounts and tokens: two wait on the locks ...
    let locked = Locked::hold(&db, "accounts, tokens");
    let (tx, done) = channel();
    let mut handles: Vec<Option<JoinHandle<Response>>> = (0..2)
        .map(|i| Some(register_in_background(&s, &hs, &format!("held{i}"), &tx, i)))
        .collect();
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND wait_event_type = 'Lock'"
    );
    while psql_on(get("PG_PORT"), get("PG_USER"), &db, &waiting).trim() != "2" {
        // A background job's call may hold a place for a moment (jobs pass the bulkhead
        // too): a registration refused then is asked again.
        if let Ok(n) = done.try_recv() {
            let early = handles[n].take().expect("once").join().expect("no panic");
            assert_refused(&early, "state database");
            handles[n] = Some(register_in_background(&s, &hs, &format!("held{n}"), &tx, n));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // ... so a third call to the state is refused at once, naming the database.
    let refused = s.post(
        "/_matrix/identity/v2/account/register",
        &serde_json::json!({
            "access_token": format!("user:@third:127.0.0.1:{}", hs.port),
            "token_type": "Bearer",
            "matrix_server_name": format!("127.0.0.1:{}", hs.port),
            "expires_in": 3600,
        })
        .to_string(),
    );
    assert_refused(&refused, "state database");
    // What needs no state answers meanwhile: discovery, the key, a lookup in a store.
    assert_eq!(s.get("/_matrix/identity/v2").status, 200);
    assert_eq!(s.get("/_matrix/identity/v2/pubkey/ed25519:0").status, 200);
    assert_eq!(s.get(BOB).json()["mxid"], "@bob:example.org");
    assert!(
        done.try_recv().is_err(),
        "the held registrations are outstanding"
    );
    assert!(
        s.wait_for_log("the state database (PostgreSQL) is busy: 2 workers already wait on it (http.backendWorkers)"),
        "{}",
        s.log()
    );

    // The locks go: the held registrations end, and new ones are served.
    locked.release();
    for h in handles.iter_mut().filter_map(Option::take) {
        let r = h.join().expect("no panic");
        assert_eq!(r.status, 200, "{}", r.text);
    }
    v2_token(&s, &hs, "after");
}

/// What another identity server of the test's own answers for remote 3PID sessions: it
/// serves v1 and starts sessions at once; `getValidated3pid` (validated) is counted and
/// held while answering is off.
fn remote_is(request_line: &str) -> (bool, &'static str) {
    if request_line.contains("/3pid/getValidated3pid") {
        (
            true,
            r#"{"medium":"email","address":"x@example.org","validated_at":1}"#,
        )
    } else if request_line.contains("/validate/email/requestToken") {
        (false, r#"{"sid":"remote-sid"}"#)
    } else {
        (false, "{}")
    }
}

/// Remote 3PID sessions on another identity server that stops answering: with one place
/// (`backendWorkers: 1`), one getValidated3pid waits on it and a second is refused at once
/// (503 M_UNKNOWN naming the server, never sent to it, logged, counted), while the rest
/// of mxisd answers; once it answers, so does the held one.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_remote_identity_server_that_stops_answering_holds_only_its_share_of_the_workers() {
    use crate::support::mail::{fresh_address, link_in, wait_for};
    ensure_up();
    let remote = Backend::start(remote_is);
    let metrics = free_port();
    let dir = TempDir::new();
    let config = dir.join("mxisd.yaml");
    std::fs::write(
        &config,
        format!(
            "matrix:\n  domain: example.org\n  identity:\n    servers:\n      remote: ['http://127.0.0.1:{remote}']\nserver:\n  port: 0\nkey:\n  path: '{keys}'\nstorage:\n  provider:\n    sqlite:\n      database: '{db}'\nhttp:\n  workers: 4\n  backendWorkers: 1\nmetrics:\n  enabled: true\n  port: {metrics}\nthreepid:\n  medium:\n    email:\n      identity:\n        from: 'identity@example.org'\n        name: 'Home Identity'\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {smtp}\n          tls: 0\nfederation:\n  resolver: '127.0.0.1:{dns}'\n  ipRangeWhitelist: ['127.0.0.0/8']\n  connectTimeout: 2\n  timeout: 25\nsession:\n  policy:\n    validation:\n      enabled: true\n      forLocal:\n        enabled: true\n        toLocal: false\n        toRemote:\n          enabled: true\n          server: 'remote'\n      forRemote:\n        enabled: true\n        toLocal: false\n        toRemote:\n          enabled: true\n          server: 'remote'\n",
            remote = remote.port,
            keys = dir.join("keys").display(),
            db = dir.join("mxisd.db").display(),
            smtp = get("SMTP_PORT"),
            dns = get("DNS_PORT"),
        ),
    )
    .expect("the config");
    let s = Arc::new(Mxisd::spawn(dir, &config));
    // Two sessions, each started on the remote by our link.
    let sessions: Vec<(String, String)> = (0..2)
        .map(|i| {
            let email = fresh_address("bulkremote", "example.org");
            let secret = format!("s{i}");
            let r = s.post(
                "/_matrix/identity/api/v1/validate/email/requestToken",
                &serde_json::json!({"client_secret": secret, "email": email, "send_attempt": 1})
                    .to_string(),
            );
            assert_eq!(r.status, 200, "{}", r.text);
            let sid = r.json()["sid"].as_str().expect("a sid").to_owned();
            let link = link_in(&wait_for(&email, 1)[0]);
            let page = s.get(link.trim_start_matches("https://example.org"));
            assert_eq!(page.status, 200, "{}\n{}", page.text, s.log());
            (sid, secret)
        })
        .collect();
    assert!(s.wait_for_log("remote session started"), "{}", s.log());
    let check = |(sid, secret): &(String, String)| {
        format!("/_matrix/identity/api/v1/3pid/getValidated3pid?sid={sid}&client_secret={secret}")
    };
    assert_eq!(refused_total(metrics, "remote_sessions"), 0);

    remote.answer(false);
    // The first check waits on the remote (read by it: the one place is taken) ...
    let (tx, done) = channel();
    let held = {
        let (s, url, tx) = (s.clone(), check(&sessions[0]), tx.clone());
        std::thread::spawn(move || {
            let r = s.get(&url);
            let _ = tx.send(0);
            r
        })
    };
    remote.wait_read(1);
    // ... so a second is refused at once, without reaching it.
    let refused = s.get(&check(&sessions[1]));
    let body = refused.assert_error(503, "M_UNKNOWN");
    let name = format!("127.0.0.1:{}", remote.port);
    assert!(
        body["error"].as_str().unwrap_or_default().contains(&name),
        "{body}"
    );
    assert_eq!(
        remote.read.load(Ordering::SeqCst),
        1,
        "it never reached the remote"
    );
    assert_eq!(refused_total(metrics, "remote_sessions"), 1);
    assert_eq!(s.get("/_matrix/identity/v2").status, 200);
    assert!(
        done.try_recv().is_err(),
        "the held check is still outstanding"
    );
    assert!(
        s.wait_for_log("the remote identity servers of 3PID sessions is busy: 1 workers already wait on it (http.backendWorkers)"),
        "{}",
        s.log()
    );

    // Answering again: the held check ends, validated.
    remote.answer(true);
    let r = held.join().expect("no panic");
    assert_eq!(r.status, 200, "{}", r.text);
}
