//! `/metrics` and `/ready` on the metrics listener: every line of the page parsed as
//! Prometheus text by a strict parser of our own, counters that move by what the requests
//! made, and readiness that names the store that does not answer.

use crate::support::free_port;
use crate::support::{self, agent, Mxisd, Response, Silent};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// Labels as (name, value), sorted.
type Labels = Vec<(String, String)>;
/// A series: the sample's name and its labels.
type Series = (String, Labels);

/// A parsed page: every sample's value, and each family's type.
struct Page {
    samples: BTreeMap<Series, f64>,
    types: BTreeMap<String, String>,
}

impl Page {
    /// The value of `name{labels}`; fails the test when the page has no such series.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = series(name, labels);
        *self
            .samples
            .get(&key)
            .unwrap_or_else(|| panic!("no series {key:?} on the page"))
    }

    /// As [`Page::get`], 0 for a series not on the page (a counter not yet counted).
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .get(&series(name, labels))
            .copied()
            .unwrap_or(0.0)
    }
}

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// Undoes the format's escapes in `s`, which may hold only `\\`, `\n` and, in label
/// values, `\"`.
fn unescape(s: &str, quote: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('"') if quote => out.push('"'),
                other => return Err(format!("bad escape \\{other:?}")),
            },
            '"' if quote => return Err("unescaped quote".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|e| format!("value {s:?}: {e}")),
    }
}

/// `{a="x",b="y"}` at the start of `s`: the labels and the rest of the line.
fn labels(s: &str) -> Result<(Labels, &str), String> {
    let mut rest = s.strip_prefix('{').ok_or("no {")?;
    let mut out = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((out, after));
        }
        let (name, after) = rest.split_once("=\"").ok_or("no =\" after a label name")?;
        if !is_name(name, false) {
            return Err(format!("label name {name:?}"));
        }
        // The value ends at the first quote not escaped.
        let bytes = after.as_bytes();
        let mut i = 0;
        while i < bytes.len() && bytes[i] != b'"' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        if i >= bytes.len() {
            return Err("label value not closed".into());
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} twice"));
        }
        out.push((name.to_owned(), unescape(&after[..i], true)?));
        rest = &after[i + 1..];
        if let Some(next) = rest.strip_prefix(',') {
            rest = next;
            if rest.starts_with('}') {
                return Err("a comma before }".into());
            }
        } else if !rest.starts_with('}') {
            return Err("no , or } after a label".into());
        }
    }
}

/// Parses `text` strictly: HELP then TYPE before each family's samples, a family's samples
/// together, valid names and escapes, no timestamps, no other comments, no series twice,
/// histograms cumulative with a `+Inf` bucket equal to their count.
fn parse(text: &str) -> Page {
    let fail = |n: usize, line: &str, why: String| -> ! {
        panic!("line {}: {why}: {line:?}\nthe page:\n{text}", n + 1)
    };
    assert!(text.ends_with('\n'), "the page ends with a line feed");
    let mut page = Page {
        samples: BTreeMap::new(),
        types: BTreeMap::new(),
    };
    let mut helped = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut done = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            if !is_name(name, true) || !helped.insert(name.to_owned()) {
                fail(n, line, "HELP of a bad or repeated name".into());
            }
            if let Err(e) = unescape(help, false) {
                fail(n, line, e);
            }
            if let Some(previous) = current.replace(name.to_owned()) {
                done.insert(previous);
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            if current.as_deref() != Some(name) || page.types.contains_key(name) {
                fail(n, line, "TYPE not right after its HELP".into());
            }
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                fail(n, line, format!("type {kind:?}"));
            }
            page.types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            fail(n, line, "a comment or an empty line".into());
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if !is_name(name, true) {
            fail(n, line, "bad metric name".into());
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            labels(&line[name_end..]).unwrap_or_else(|e| fail(n, line, e))
        } else {
            (Vec::new(), &line[name_end..])
        };
        let Some(number) = rest.strip_prefix(' ') else {
            fail(n, line, "no space before the value".into());
        };
        if number.contains(' ') {
            fail(n, line, "a timestamp or trailing text".into());
        }
        let v = value(number).unwrap_or_else(|e| fail(n, line, e));
        let Some(family) = current.clone() else {
            fail(n, line, "a sample before any family".into());
        };
        let kind = page.types.get(&family).cloned().unwrap_or_default();
        let allowed = match kind.as_str() {
            "histogram" => [
                format!("{family}_bucket"),
                format!("{family}_sum"),
                format!("{family}_count"),
            ]
            .contains(&name.to_owned()),
            "" => fail(n, line, "a sample before its TYPE".into()),
            _ => name == family,
        };
        if !allowed || done.contains(name) {
            fail(n, line, format!("not a sample of the family {family}"));
        }
        if name.ends_with("_bucket") && !labels.iter().any(|(k, _)| k == "le") {
            fail(n, line, "a bucket without le".into());
        }
        let mut labels = labels;
        labels.sort();
        if page.samples.insert((name.to_owned(), labels), v).is_some() {
            fail(n, line, "a series twice".into());
        }
    }
    check_histograms(&page);
    page
}

/// Buckets never decrease with `le`, and `+Inf`'s equals `_count`.
fn check_histograms(page: &Page) {
    for (family, _) in page.types.iter().filter(|(_, k)| *k == "histogram") {
        let bucket = format!("{family}_bucket");
        let mut by_series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for ((name, labels), v) in &page.samples {
            if *name != bucket {
                continue;
            }
            let le = labels.iter().find(|(k, _)| k == "le").unwrap();
            let rest: Vec<_> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
            by_series
                .entry(rest)
                .or_default()
                .push((value(&le.1).unwrap(), *v));
        }
        for (labels, mut buckets) in by_series {
            buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{labels:?}: buckets decrease: {buckets:?}"
            );
            let last = buckets.last().unwrap();
            assert_eq!(last.0, f64::INFINITY, "{family}{labels:?}: no +Inf bucket");
            let count = page.samples[&(format!("{family}_count"), labels.clone())];
            assert_eq!(last.1, count, "{family}{labels:?}: +Inf bucket and count");
            assert!(page
                .samples
                .contains_key(&(format!("{family}_sum"), labels.clone())));
        }
    }
}

fn metrics_config(port: u16) -> String {
    format!("metrics:\n  enabled: true\n  port: {port}\n")
}

fn get(port: u16, path: &str) -> Response {
    Response::from(agent().get(format!("http://127.0.0.1:{port}{path}")).call())
}

fn scrape(port: u16) -> Page {
    let r = get(port, "/metrics");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&r.text)
}

const MEMORY: &str = "memory:
  enabled: true
  identities:
    - username: alice
      password: alicepw
      threepids:
        - medium: email
          address: alice@example.org
lookup:
  recursive:
    enabled: false
http:
  workers: 4
";

const V1_LOOKUP: &str = "/_matrix/identity/api/v1/lookup";

#[test]
fn the_page_parses_and_its_counters_move_by_the_requests_made() {
    let port = free_port();
    let s = Mxisd::start(&format!("{MEMORY}{}", metrics_config(port)));
    s.wait_hash_index();
    let before = scrape(port);
    assert_eq!(before.types["mxisd_http_requests_total"], "counter");
    assert_eq!(
        before.types["mxisd_http_request_duration_seconds"],
        "histogram"
    );
    assert_eq!(before.types["mxisd_http_workers_busy"], "gauge");
    assert_eq!(
        before.get(
            "mxisd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(before.get("mxisd_http_workers", &[]), 4.0);
    assert_eq!(before.get("mxisd_state_up", &[]), 1.0);
    for kind in ["invite-mail", "onbind"] {
        assert_eq!(
            before.get("mxisd_delivery_queue_items", &[("kind", kind)]),
            0.0
        );
        assert_eq!(
            before.get("mxisd_delivery_queue_oldest_age_seconds", &[("kind", kind)]),
            0.0
        );
    }
    // alice's one e-mail address, listed by the memory store.
    assert_eq!(before.get("mxisd_hash_index_entries", &[]), 1.0);
    assert!(before.get("mxisd_hash_index_age_seconds", &[]) >= 0.0);
    for connector in ["smtp", "twilio"] {
        for result in ["sent", "failed"] {
            let labels = [("connector", connector), ("result", result)];
            assert_eq!(before.get("mxisd_notifications_total", &labels), 0.0);
        }
    }
    for kind in ["unavailable", "error"] {
        assert_eq!(
            before.get("mxisd_state_errors_total", &[("kind", kind)]),
            0.0
        );
    }

    // A hit, a miss, a bad request (no medium), a path no route has, a bulk lookup of a
    // hit and a miss.
    let hit = s.get(&format!(
        "{V1_LOOKUP}?medium=email&address=alice%40example.org"
    ));
    assert_eq!(hit.json()["mxid"], "@alice:example.org", "{}", hit.text);
    let miss = s.get(&format!(
        "{V1_LOOKUP}?medium=email&address=nobody%40example.org"
    ));
    assert_eq!(miss.json(), json!({}));
    s.get(&format!("{V1_LOOKUP}?address=alice%40example.org"))
        .assert_error(400, "M_MISSING_PARAMS");
    s.get("/_matrix/identity/v2/no/such/path")
        .assert_error(404, "M_UNRECOGNIZED");
    let bulk = json!({"threepids": [["email", "alice@example.org"], ["email", "bob@example.org"]]});
    let r = s.post(support::V1_BULK_LOOKUP, &bulk.to_string());
    assert_eq!(r.status, 200, "{}", r.text);

    let after = scrape(port);
    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.count(name, labels) - before.count(name, labels)
    };
    let requests = "mxisd_http_requests_total";
    let lookup = |status| {
        [
            ("endpoint", V1_LOOKUP),
            ("method", "GET"),
            ("status", status),
        ]
    };
    assert_eq!(moved(requests, &lookup("200")), 2.0);
    assert_eq!(moved(requests, &lookup("400")), 1.0);
    let unknown = [
        ("endpoint", "(unknown)"),
        ("method", "GET"),
        ("status", "404"),
    ];
    assert_eq!(moved(requests, &unknown), 1.0);
    let bulk_ok = [
        ("endpoint", support::V1_BULK_LOOKUP),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert_eq!(moved(requests, &bulk_ok), 1.0);
    let latency = "mxisd_http_request_duration_seconds_count";
    let route = [("endpoint", V1_LOOKUP), ("method", "GET")];
    assert_eq!(moved(latency, &route), 3.0);
    let inf = [("endpoint", V1_LOOKUP), ("method", "GET"), ("le", "+Inf")];
    assert_eq!(
        moved("mxisd_http_request_duration_seconds_bucket", &inf),
        3.0
    );
    assert!(moved("mxisd_http_request_duration_seconds_sum", &route) > 0.0);
    // The single hit and miss, the bulk's hit and miss; the bad request looked up nothing.
    let lookups = "mxisd_lookups_total";
    assert_eq!(moved(lookups, &[("source", "store")]), 2.0);
    assert_eq!(moved(lookups, &[("source", "miss")]), 2.0);
    for source in ["dns", "forwarder", "cache", "error"] {
        assert_eq!(moved(lookups, &[("source", source)]), 0.0, "{source}");
    }
    // No API request is in flight but, at most, the end of the last one's.
    let busy = after.get("mxisd_http_workers_busy", &[]);
    assert!((0.0..=1.0).contains(&busy), "{busy}");
    assert_eq!(
        after.get("mxisd_state_errors_total", &[("kind", "error")]),
        0.0
    );

    let ready = get(port, "/ready");
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.text, "ready\nstate: ok\nstore memory: ok\n");
    // The listener serves nothing else, and the API's port has neither page.
    assert_eq!(get(port, "/_matrix/identity/v2").status, 404);
    assert_eq!(s.get("/metrics").status, 404);
}

#[test]
fn readiness_names_the_store_that_does_not_answer() {
    // A REST backend on a port where nothing listens: refused at once.
    let closed = free_port();
    let port = free_port();
    let s = Mxisd::start(&format!(
        "{MEMORY}rest:\n  enabled: true\n  host: 'http://127.0.0.1:{closed}'\n  timeout: 10\n{}federation:\n  resolver: '127.0.0.1:{}'\n  ipRangeWhitelist: ['127.0.0.0/8']\n",
        metrics_config(port),
        support::services::get("DNS_PORT"),
    ));
    let ready = get(port, "/ready");
    assert_eq!(ready.status, 503, "{}", ready.text);
    let lines: Vec<&str> = ready.text.lines().collect();
    assert_eq!(lines[..3], ["not ready", "state: ok", "store memory: ok"]);
    assert!(
        lines[3].starts_with("store rest: FAILED: "),
        "{}",
        ready.text
    );
    assert_eq!(lines.len(), 4, "{}", ready.text);
    // A lookup the stores cannot answer is an error, not a miss.
    let before = scrape(port);
    s.get(&format!(
        "{V1_LOOKUP}?medium=email&address=nobody%40example.org"
    ))
    .assert_error(503, "M_UNKNOWN");
    let after = scrape(port);
    let moved = |source| {
        let labels = [("source", source)];
        after.count("mxisd_lookups_total", &labels) - before.count("mxisd_lookups_total", &labels)
    };
    assert_eq!((moved("error"), moved("miss")), (1.0, 0.0));
}

#[test]
fn a_store_that_never_answers_is_given_up_at_the_deadline_and_not_asked_twice() {
    let silent = Silent::start();
    let port = free_port();
    let s = Mxisd::start(&format!(
        "{MEMORY}rest:\n  enabled: true\n  host: 'http://127.0.0.1:{}'\n  timeout: 30\n{}federation:\n  resolver: '127.0.0.1:{}'\n  ipRangeWhitelist: ['127.0.0.0/8']\n",
        silent.port,
        metrics_config(port),
        support::services::get("DNS_PORT"),
    ));
    // The backend's own timeout (30 s) is past the readiness deadline (3 s).
    let ready = get(port, "/ready");
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert!(
        ready
            .text
            .ends_with("store rest: FAILED: no answer within 3 s\n"),
        "{}",
        ready.text
    );
    // Its check still waits on the backend: not started again.
    let again = get(port, "/ready");
    assert_eq!(again.status, 503, "{}", again.text);
    assert!(
        again
            .text
            .ends_with("store rest: FAILED: its previous check has not answered yet\n"),
        "{}",
        again.text
    );
    assert_eq!(
        silent.accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one connection to the backend"
    );
    // The page is still served meanwhile.
    assert_eq!(scrape(port).get("mxisd_state_up", &[]), 1.0);
    drop(s);
}

fn smtp_config(port: impl std::fmt::Display) -> String {
    format!("threepid:\n  medium:\n    email:\n      identity:\n        from: 'identity@example.org'\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {port}\n          tls: 0\n          timeout: 2\n")
}

/// Asks for a validation mail to `email`; its answer's status.
fn request_email(s: &Mxisd, email: &str) -> u16 {
    let body = json!({"client_secret": "secret-1", "email": email, "send_attempt": 1});
    s.post(
        "/_matrix/identity/api/v1/validate/email/requestToken",
        &body.to_string(),
    )
    .status
}

fn notifications(page: &Page, result: &str) -> f64 {
    page.count(
        "mxisd_notifications_total",
        &[("connector", "smtp"), ("result", result)],
    )
}

#[test]
fn a_mail_the_relay_does_not_take_counts_as_failed() {
    let port = free_port();
    let s = Mxisd::start(&format!(
        "{}{}",
        smtp_config(free_port()),
        metrics_config(port)
    ));
    let before = scrape(port);
    assert_eq!(request_email(&s, "nobody@example.org"), 500);
    let after = scrape(port);
    assert_eq!(
        notifications(&after, "failed") - notifications(&before, "failed"),
        1.0
    );
    assert_eq!(notifications(&after, "sent"), 0.0);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_mail_the_relay_takes_counts_as_sent() {
    let port = free_port();
    let s = Mxisd::start(&format!(
        "{}{}",
        smtp_config(support::services::get("SMTP_PORT")),
        metrics_config(port)
    ));
    let email = support::mail::fresh_address("metrics", "example.org");
    assert_eq!(request_email(&s, &email), 200, "{}", s.log());
    assert_eq!(support::mail::wait_for(&email, 1).len(), 1);
    let page = scrape(port);
    assert_eq!(
        (notifications(&page, "sent"), notifications(&page, "failed")),
        (1.0, 0.0)
    );
}

/// The parser of these tests refuses what the format does not allow.
#[test]
fn the_parser_is_strict() {
    let good = "# HELP a_total Help with \\\\ and \\n.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 1\n# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n";
    let page = parse(good);
    assert_eq!(page.get("a_total", &[("x", "q\"\\\n")]), 1.0);
    assert_eq!(page.get("h_count", &[]), 2.0);
    let bad = [
        "# TYPE a counter\na 1\n",                               // no HELP
        "# HELP a x\n# TYPE a counter\na 1",                     // no final line feed
        "# HELP a x\n# TYPE a counter\na{x=\"\\t\"} 1\n",       // unknown escape
        "# HELP a x\n# TYPE a counter\na{x=\"a\"b\"} 1\n",      // stray quote
        "# HELP a x\n# TYPE a counter\na 1\na 2\n",             // a series twice
        "# HELP a x\n# TYPE a counter\nb 1\n",                  // another family's sample
        "# HELP a x\n# TYPE a counter\na 1 1700000000\n",       // a timestamp
        "# HELP a x\n# TYPE a counter\n# other\na 1\n",         // another comment
        "# HELP a x\n# TYPE a counter\na{1x=\"a\"} 1\n",        // bad label name
        "# HELP a x\n# TYPE a counter\na one\n",                // not a number
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
    ];
    for page in bad {
        let refused = std::panic::catch_unwind(|| parse(page)).is_err();
        assert!(refused, "accepted: {page:?}");
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_state_database_that_is_down_is_not_ready_and_counted() {
    let pg = crate::support::pg_cluster::PgCluster::start(false);
    let port = free_port();
    let _mxisd = Mxisd::start(&format!(
        "storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{}'\n      timeout: 2\n{MEMORY}{}",
        pg.connection(),
        metrics_config(port)
    ));
    let ready = get(port, "/ready");
    assert_eq!(ready.text, "ready\nstate: ok\nstore memory: ok\n");
    let before = scrape(port);
    assert_eq!(before.get("mxisd_state_up", &[]), 1.0);

    pg.stop();
    let ready = get(port, "/ready");
    assert_eq!(ready.status, 503, "{}", ready.text);
    let lines: Vec<&str> = ready.text.lines().collect();
    assert_eq!((lines[0], lines[2]), ("not ready", "store memory: ok"));
    assert!(
        lines[1].starts_with("state: FAILED: state database (PostgreSQL) unavailable"),
        "{}",
        ready.text
    );
    let after = scrape(port);
    assert_eq!(after.get("mxisd_state_up", &[]), 0.0);
    assert!(
        !after
            .samples
            .keys()
            .any(|(n, _)| n == "mxisd_delivery_queue_items"),
        "no queue figures without the state"
    );
    // The readiness check's failure, at least (its answer said the error): unavailable (a
    // new connection refused) or another error (a pooled connection found broken).
    let errors = |p: &Page| {
        p.get("mxisd_state_errors_total", &[("kind", "unavailable")])
            + p.get("mxisd_state_errors_total", &[("kind", "error")])
    };
    assert!(errors(&after) > errors(&before));

    pg.start_again();
    let ready = get(port, "/ready");
    assert_eq!(ready.status, 200, "{}", ready.text);
}

#[test]
fn lookups_answered_by_a_forwarder_then_its_kept_answer_count_there() {
    // B knows bob; A knows nobody and forwards to B. Addresses of A's own domain are never
    // looked up in the DNS: only the forwarder is asked, over loopback.
    let b = Mxisd::start(
        "memory:\n  enabled: true\n  identities:\n    - username: bob\n      threepids:\n        - medium: email\n          address: bob@example.org\n",
    );
    let port = free_port();
    let dir = support::TempDir::new();
    let keys = dir.join("keys");
    let text = support::config_text(
        &dir,
        &keys,
        &format!(
            "forward:\n  servers: ['lan']\n{}federation:\n  resolver: '127.0.0.1:{}'\n  ipRangeWhitelist: ['127.0.0.0/8']\n",
            metrics_config(port),
            support::services::get("DNS_PORT")
        ),
    )
    .replacen(
        "matrix:\n  domain: example.org\n",
        &format!(
            "matrix:\n  domain: example.org\n  identity:\n    servers:\n      lan: ['http://{}']\n",
            b.addr
        ),
        1,
    );
    let config = dir.join("mxisd.yaml");
    std::fs::write(&config, text).unwrap();
    let a = Mxisd::spawn(dir, &config);

    let before = scrape(port);
    let single = |address: &str| {
        a.get(&format!("{V1_LOOKUP}?medium=email&address={address}"))
            .json()
    };
    assert_eq!(
        single("bob%40example.org")["mxid"],
        "@bob:example.org",
        "{}",
        a.log()
    );
    assert_eq!(single("bob%40example.org")["mxid"], "@bob:example.org");
    assert_eq!(single("nobody%40example.org"), json!({}));
    assert_eq!(single("nobody%40example.org"), json!({}));
    let bulk =
        json!({"threepids": [["email", "bob@example.org"], ["email", "nobody2@example.org"]]});
    let r = a.post(support::V1_BULK_LOOKUP, &bulk.to_string());
    assert_eq!(
        r.json(),
        json!({"threepids": [["email", "bob@example.org", "@bob:example.org"]]})
    );
    let after = scrape(port);
    let moved = |source| {
        let labels = [("source", source)];
        after.count("mxisd_lookups_total", &labels) - before.count("mxisd_lookups_total", &labels)
    };
    // bob: the forwarder, then kept (single and bulk); nobody: a miss asked, then a miss
    // kept; nobody2: asked in the bulk, a miss.
    assert_eq!(moved("forwarder"), 1.0);
    assert_eq!(moved("cache"), 2.0);
    assert_eq!(moved("miss"), 3.0);
    for source in ["store", "dns", "error"] {
        assert_eq!(moved(source), 0.0, "{source}");
    }
}
