//! Remote 3PID sessions (mxisd's seed 004) between two real mxisd on loopback: A, the
//! server users talk to, and B, the remote identity server A's policy sends sessions to
//! (`matrix.identity.servers: {remote: [B]}`). Mails are read from the test SMTP sink,
//! pages are walked in headless Chromium, binds are seen by lookups on B.

use crate::sessions::chromium;
use crate::support::mail::{fresh_address, link_in, param, wait_for};
use crate::support::services::get;
use crate::support::{Mxisd, TempDir};
use serde_json::{json, Value};
use std::path::PathBuf;

const V1: &str = "/_matrix/identity/api/v1";

/// A's and B's names in their mails' `From`.
const A_NAME: &str = "Home Identity";
const B_NAME: &str = "Remote Identity";

/// The seed's three examples, and its default table (what `forLocal`/`forRemote` left out
/// default to), each with `remote` as the list of `toRemote`.
const LOCAL_ONLY: &str = "session:\n  policy:\n    validation:\n      enabled: true\n      forLocal:\n        enabled: true\n        toLocal: true\n        toRemote:\n          enabled: false\n      forRemote:\n        enabled: true\n        toLocal: true\n        toRemote:\n          enabled: false\n";
const LOCAL_AND_REMOTE: &str = "session:\n  policy:\n    validation:\n      enabled: true\n      forLocal:\n        enabled: true\n        toLocal: true\n        toRemote:\n          enabled: true\n          server: 'remote'\n      forRemote:\n        enabled: true\n        toLocal: false\n        toRemote:\n          enabled: true\n          server: 'remote'\n";
const REMOTE_ONLY: &str = "session:\n  policy:\n    validation:\n      enabled: true\n      forLocal:\n        enabled: true\n        toLocal: false\n        toRemote:\n          enabled: true\n          server: 'remote'\n      forRemote:\n        enabled: true\n        toLocal: false\n        toRemote:\n          enabled: true\n          server: 'remote'\n";

/// A whole config: `matrix` with `matrix_extra`, the server's `name`, its keys and SQLite
/// database in `dir`, mail to the test sink from `from_name`, binds kept, then `extra`.
fn config(dir: &TempDir, matrix_extra: &str, name: &str, from_name: &str, extra: &str) -> PathBuf {
    let storage = format!(
        "storage:\n  provider:\n    sqlite:\n      database: '{}'\n",
        dir.join("mxisd.db").display()
    );
    config_on(
        dir,
        &dir.join("keys"),
        &storage,
        matrix_extra,
        name,
        from_name,
        extra,
    )
}

/// `config` with the keys at `keys` and `storage` as given.
fn config_on(
    dir: &TempDir,
    keys: &std::path::Path,
    storage: &str,
    matrix_extra: &str,
    name: &str,
    from_name: &str,
    extra: &str,
) -> PathBuf {
    let text = format!(
        "matrix:\n  domain: example.org\n{matrix_extra}server:\n  port: 0\n  name: {name}\nkey:\n  path: '{keys}'\n{storage}binds:\n  local:\n    enabled: true\nthreepid:\n  medium:\n    email:\n      identity:\n        from: 'identity@{name}'\n        name: '{from_name}'\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {smtp}\n          tls: 0\n{extra}",
        keys = keys.display(),
        smtp = get("SMTP_PORT"),
    );
    let path = dir.join("mxisd.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// B, the remote: every session here, v1 served unless `v1` is false.
fn start_b(v1: bool) -> Mxisd {
    let dir = TempDir::new();
    let matrix = if v1 { "" } else { "  v1: false\n" };
    let path = config(&dir, matrix, "remote.example", B_NAME, "");
    Mxisd::spawn(dir, &path)
}

/// A, with `policy` and `remote` (a base URL) as the `remote` list; loopback allowed and
/// names asked of the test DNS only, so nothing leaves the machine.
fn start_a(remote: &str, policy: &str) -> Mxisd {
    let dir = TempDir::new();
    let (matrix, federation) = a_sections(remote, policy);
    let path = config(&dir, &matrix, "example.org", A_NAME, &federation);
    Mxisd::spawn(dir, &path)
}

/// A's `matrix` additions and its `federation` and `policy` sections.
fn a_sections(remote: &str, policy: &str) -> (String, String) {
    let matrix = format!("  identity:\n    servers:\n      remote: ['{remote}']\n");
    let federation = format!(
        "federation:\n  resolver: '127.0.0.1:{}'\n  ipRangeWhitelist: ['127.0.0.0/8']\n  connectTimeout: 2\n  timeout: 4\n{policy}",
        get("DNS_PORT")
    );
    (matrix, federation)
}

fn request_email(s: &Mxisd, email: &str, secret: &str) -> String {
    let r = s.post(
        &format!("{V1}/validate/email/requestToken"),
        &json!({"client_secret": secret, "email": email, "send_attempt": 1}).to_string(),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    r.json()["sid"].as_str().unwrap().to_owned()
}

/// The mails to `to` from the server named `from_name`, once `count` arrived.
fn mails_from(to: &str, from_name: &str, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mails: Vec<String> = wait_for(to, 1)
            .into_iter()
            .filter(|m| m.contains(&format!("From: \"{from_name}\"")))
            .collect();
        if mails.len() >= count || std::time::Instant::now() > deadline {
            return mails;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The link of `server`'s validation mail to `to`, on `server`'s own address.
fn mailed_link(server: &Mxisd, to: &str, from_name: &str, public: &str) -> String {
    let mails = mails_from(to, from_name, 1);
    assert_eq!(mails.len(), 1, "{mails:?}");
    let link = link_in(&mails[0]);
    assert!(link.starts_with(public), "{link}");
    server.url(link.trim_start_matches(public))
}

/// Chromium on `url`; the DOM. `shot` names the screenshot (`target/screenshots`).
fn browse(url: &str, shot: &str) -> String {
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let path = shots.join(format!("{shot}.png"));
    let dom = chromium(url, &path);
    let png = std::fs::read(&path).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{shot}");
    dom
}

/// The `href` of the element with `id` in `dom`, as the browser would follow it on `server`.
fn href(server: &Mxisd, dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in:\n{dom}"));
    let tag_start = dom[..at].rfind('<').unwrap();
    let tag = &dom[tag_start..dom[at..].find('>').unwrap() + at];
    let href = tag
        .split("href=\"")
        .nth(1)
        .and_then(|h| h.split('"').next())
        .unwrap_or_else(|| panic!("no href in {tag}"))
        .replace("&amp;", "&");
    assert!(href.starts_with('/'), "{href}");
    server.url(&href)
}

fn bind(s: &Mxisd, sid: &str, secret: &str, mxid: &str) -> crate::support::Response {
    s.post(
        &format!("{V1}/3pid/bind"),
        &json!({"sid": sid, "client_secret": secret, "mxid": mxid}).to_string(),
    )
}

fn lookup(s: &Mxisd, email: &str) -> Value {
    s.get(&format!(
        "{V1}/lookup?medium=email&address={}",
        email.replace('@', "%40")
    ))
    .json()
}

fn validated(s: &Mxisd, sid: &str, secret: &str) -> crate::support::Response {
    s.get(&format!(
        "{V1}/3pid/getValidated3pid?sid={sid}&client_secret={secret}"
    ))
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn local_only_validates_and_binds_here_and_offers_nothing() {
    let b = start_b(true);
    let a = start_a(&b.url(""), LOCAL_ONLY);
    for (domain, shot) in [
        ("example.org", "local-only"),
        ("gmail.example", "local-only-other"),
    ] {
        let email = fresh_address("remote", domain);
        let sid = request_email(&a, &email, "s1");
        let link = mailed_link(&a, &email, A_NAME, "https://example.org");
        let page = browse(&link, shot);
        assert!(page.contains("<h1>Address confirmed</h1>"), "{page}");
        assert!(!page.contains("id=\"publish\""), "{page}");
        assert!(page.contains("<p id=\"note\"></p>"), "{page}");
        let mxid = "@alice:example.org";
        let assoc = bind(&a, &sid, "s1", mxid).json();
        assert_eq!(assoc["mxid"], mxid);
        assert!(assoc["signatures"]["example.org"].is_object(), "{assoc}");
        assert_eq!(lookup(&a, &email)["mxid"], mxid);
        // Nothing reached B: no mail from it, nothing bound there.
        assert_eq!(lookup(&b, &email), json!({}));
        assert!(mails_from(&email, B_NAME, 0).is_empty());
    }
    assert!(!a.log().contains("remote session"), "{}", a.log());
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn local_and_remote_validates_here_then_publishes_on_b_when_asked() {
    let b = start_b(true);
    let a = start_a(&b.url(""), LOCAL_AND_REMOTE);
    let b_name = b.addr.to_string();
    let email = fresh_address("remote", "example.org");
    let sid = request_email(&a, &email, "s2");
    // Our link: validated here, publishing on B offered.
    let page = browse(
        &mailed_link(&a, &email, A_NAME, "https://example.org"),
        "remote-offer",
    );
    assert!(page.contains("<h1>Address confirmed</h1>"), "{page}");
    assert!(
        page.contains(&format!("Also publish on {b_name}")),
        "{page}"
    );
    assert_eq!(validated(&a, &sid, "s2").status, 200);
    // The offer taken: B mails the user; the page says so.
    let page = browse(&href(&a, &page, "publish"), "remote-request");
    assert!(
        page.contains(&format!("Check your mail from {b_name}")),
        "{page}"
    );
    let check = href(&a, &page, "check");
    // Checking before following B's link: not yet.
    let early = browse(&check, "remote-check-early");
    assert!(early.contains("not confirmed there yet"), "{early}");
    // Bound here meanwhile: here at once, on B once it validates.
    let mxid = "@bob:example.org";
    let assoc = bind(&a, &sid, "s2", mxid).json();
    assert!(assoc["signatures"]["example.org"].is_object(), "{assoc}");
    assert_eq!(lookup(&a, &email)["mxid"], mxid);
    assert_eq!(lookup(&b, &email), json!({}));
    // B's mail, its link, then our check page: done, and bound on B.
    let b_link = mailed_link(&b, &email, B_NAME, "https://remote.example");
    let b_page = browse(&b_link, "remote-b-link");
    assert!(b_page.contains("<h1>Address confirmed</h1>"), "{b_page}");
    let done = browse(&check, "remote-done");
    assert!(
        done.contains(&format!("Address confirmed on {b_name}")),
        "{done}"
    );
    let on_b = lookup(&b, &email);
    assert_eq!(on_b["mxid"], mxid, "{on_b}\n{}", a.log());
    assert!(on_b["signatures"]["remote.example"].is_object(), "{on_b}");
    // The user's own secret never reached B: B's session has a secret of A's.
    let b_secret = param(&b_link, "client_secret");
    assert_ne!(b_secret, "s2");
    assert_eq!(b_secret.len(), 32);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn remote_only_validates_and_binds_on_b_only() {
    let b = start_b(true);
    let a = start_a(&b.url(""), REMOTE_ONLY);
    let b_name = b.addr.to_string();
    for (domain, shot) in [
        ("example.org", "remote-only"),
        ("gmail.example", "remote-only-other"),
    ] {
        let email = fresh_address("remote", domain);
        let sid = request_email(&a, &email, "s3");
        // Our link only starts B's session: straight to "check your mail from B".
        let page = browse(
            &mailed_link(&a, &email, A_NAME, "https://example.org"),
            shot,
        );
        assert!(
            page.contains(&format!("Check your mail from {b_name}")),
            "{page}"
        );
        // Not validated here until B is.
        validated(&a, &sid, "s3").assert_error(400, "M_SESSION_NOT_VALIDATED");
        bind(&a, &sid, "s3", "@carol:example.org").assert_error(400, "M_SESSION_NOT_VALIDATED");
        browse(
            &mailed_link(&b, &email, B_NAME, "https://remote.example"),
            &format!("{shot}-b-link"),
        );
        let done = browse(&href(&a, &page, "check"), &format!("{shot}-done"));
        assert!(
            done.contains(&format!("Address confirmed on {b_name}")),
            "{done}"
        );
        assert_eq!(
            validated(&a, &sid, "s3").json()["address"],
            email.to_lowercase()
        );
        // The bind is B's: its association, findable on B, and nothing bound here.
        let mxid = "@carol:example.org";
        let assoc = bind(&a, &sid, "s3", mxid).json();
        assert_eq!(assoc["mxid"], mxid, "{assoc}");
        assert!(assoc["signatures"]["remote.example"].is_object(), "{assoc}");
        assert!(assoc["signatures"].get("example.org").is_none(), "{assoc}");
        assert_eq!(lookup(&b, &email)["mxid"], mxid);
        assert_eq!(lookup(&a, &email), json!({}));
    }
}

/// The offer due on a local validation cannot be made: the page and A's log say why, and
/// the local flow completes (bound here).
fn offer_not_made(a: &Mxisd, remote: &str, page_says: &str, log_says: &str, shot: &str) {
    let email = fresh_address("remote", "example.org");
    let sid = request_email(a, &email, "s4");
    // Found when a session needs it, never at start.
    assert!(!a.log().contains(log_says), "{}", a.log());
    let page = browse(&mailed_link(a, &email, A_NAME, "https://example.org"), shot);
    assert!(page.contains("<h1>Address confirmed</h1>"), "{page}");
    assert!(!page.contains("id=\"publish\""), "{page}");
    assert!(
        page.contains(&format!("It is not published on {remote}: {page_says}")),
        "{page}"
    );
    assert!(
        a.wait_for_log(&format!(
            "publishing on http://{remote} not offered: {log_says}"
        )),
        "{}",
        a.log()
    );
    let mxid = "@dave:example.org";
    assert_eq!(bind(a, &sid, "s4", mxid).json()["mxid"], mxid);
    assert_eq!(lookup(a, &email)["mxid"], mxid);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_v2_only_remote_is_not_offered_and_the_local_flow_completes() {
    let b = start_b(false);
    let a = start_a(&b.url(""), LOCAL_AND_REMOTE);
    let says = "it does not serve the v1 API (HTTP 404)";
    offer_not_made(&a, &b.addr.to_string(), says, says, "remote-v2-only");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_remote_that_is_down_is_not_offered_and_the_local_flow_completes() {
    let remote = format!("127.0.0.1:{}", crate::support::free_port()); // nothing listens
    let a = start_a(&format!("http://{remote}"), LOCAL_AND_REMOTE);
    offer_not_made(&a, &remote, "unreachable", "unreachable", "remote-down");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn two_instances_on_postgresql_share_the_workflow() {
    let b = start_b(true);
    let b_name = b.addr.to_string();
    let db = crate::support::services::fresh_database("remote_sessions");
    let storage = format!(
        "storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{}'\n      timeout: 2\n",
        crate::support::services::pg_connection(&db)
    );
    let keys = TempDir::new();
    let (matrix, federation) = a_sections(&b.url(""), LOCAL_AND_REMOTE);
    let instance = || {
        let dir = TempDir::new();
        let path = config_on(
            &dir,
            &keys.join("keys"),
            &storage,
            &matrix,
            "example.org",
            A_NAME,
            &federation,
        );
        Mxisd::spawn(dir, &path)
    };
    let (a1, a2) = (instance(), instance());
    let email = fresh_address("remote", "example.org");
    let sid = request_email(&a1, &email, "s5");
    // Each step on the other instance than the one before.
    let page = browse(
        &mailed_link(&a2, &email, A_NAME, "https://example.org"),
        "remote-pg-offer",
    );
    let page = browse(&href(&a1, &page, "publish"), "remote-pg-request");
    assert!(
        page.contains(&format!("Check your mail from {b_name}")),
        "{page}\n{}",
        a1.log()
    );
    browse(
        &mailed_link(&b, &email, B_NAME, "https://remote.example"),
        "remote-pg-b-link",
    );
    let done = browse(&href(&a2, &page, "check"), "remote-pg-done");
    assert!(
        done.contains(&format!("Address confirmed on {b_name}")),
        "{done}"
    );
    // Bound after the remote validated: here and on B at once.
    let mxid = "@erin:example.org";
    assert_eq!(bind(&a1, &sid, "s5", mxid).json()["mxid"], mxid);
    assert_eq!(lookup(&b, &email)["mxid"], mxid);
    assert_eq!(lookup(&a2, &email)["mxid"], mxid);
    // One session on B: the start was recorded once.
    assert_eq!(mails_from(&email, B_NAME, 1).len(), 1);
    let rows = crate::support::services::psql(
        &db,
        "SELECT count(*), count(validated_ts), count(bound_ts) FROM remote_sessions",
    );
    assert_eq!(rows.trim(), "1|1|1", "{rows}");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_remote_that_never_answers_is_given_up_at_the_deadline_and_others_are_served() {
    let silent = crate::support::Silent::start();
    let remote = format!("127.0.0.1:{}", silent.port);
    let a = start_a(&format!("http://{remote}"), LOCAL_AND_REMOTE);
    // While one page waits on the silent remote, the other workers serve.
    let waiting = {
        let url = a.url("/_matrix/identity/api/v1/pubkey/ed25519:0");
        let accepted = silent.accepted.clone();
        std::thread::spawn(move || {
            while accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            crate::support::agent()
                .get(&url)
                .call()
                .map(|r| r.status().as_u16())
        })
    };
    offer_not_made(
        &a,
        &remote,
        "did not answer in time",
        "did not answer in time",
        "remote-silent",
    );
    assert_eq!(waiting.join().unwrap().unwrap(), 200);
    assert!(silent.accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn remote_only_with_the_remote_down_says_why_on_the_page() {
    let remote = format!("127.0.0.1:{}", crate::support::free_port()); // nothing listens
    let a = start_a(&format!("http://{remote}"), REMOTE_ONLY);
    let email = fresh_address("remote", "gmail.example");
    let sid = request_email(&a, &email, "s6");
    let page = browse(
        &mailed_link(&a, &email, A_NAME, "https://example.org"),
        "remote-only-down",
    );
    assert!(
        page.contains(&format!("<h1>Not published on {remote}</h1>")),
        "{page}"
    );
    assert!(page.contains("unreachable"), "{page}");
    assert!(
        a.wait_for_log(&format!(
            "no remote session on http://{remote}: unreachable"
        )),
        "{}",
        a.log()
    );
    // Nothing validated, nothing bound, here or anywhere.
    validated(&a, &sid, "s6").assert_error(400, "M_SESSION_NOT_VALIDATED");
    bind(&a, &sid, "s6", "@frank:example.org").assert_error(400, "M_SESSION_NOT_VALIDATED");
    assert_eq!(lookup(&a, &email), json!({}));
    // Retrying is a link away; it still says why.
    let retry = browse(&href(&a, &page, "check"), "remote-only-down-retry");
    assert!(retry.contains("unreachable"), "{retry}");
}
