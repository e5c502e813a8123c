//! sydent's security advisories, one test per class, against the running binary. README
//! ("Limits and threat model", "sydent's advisory classes") says which test covers each
//! class: where another module already proves one fully, the table names that test and it
//! is not repeated here.

use crate::support::fake_homeserver::federation_config;
use crate::support::mail::{decoded, link_in, mails_to, param, wait_for};
use crate::support::services::get;
use crate::support::{self, Mxisd, Response, TempDir};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const V1: &str = "/_matrix/identity/api/v1";

/// The e-mail channel to the test sink, then `extra`.
fn mail_config(extra: &str) -> String {
    format!(
        "threepid:\n  medium:\n    email:\n      identity:\n        from: 'identity@example.org'\n        name: 'Example Identity'\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {}\n          tls: 0\n{extra}",
        get("SMTP_PORT")
    )
}

fn fresh_address(prefix: &str) -> String {
    crate::support::mail::fresh_address(prefix, "example.org")
}

fn request_email(s: &Mxisd, email: &str, secret: &str, attempt: i64) -> Response {
    s.post(
        &format!("{V1}/validate/email/requestToken"),
        &json!({"client_secret": secret, "email": email, "send_attempt": attempt}).to_string(),
    )
}

fn request_email_next(s: &Mxisd, email: &str, next_link: &str) -> Response {
    s.post(
        &format!("{V1}/validate/email/requestToken"),
        &json!({"client_secret": "nl", "email": email, "send_attempt": 1, "next_link": next_link})
            .to_string(),
    )
}

/// The most the kernel may buffer of one loopback connection: the sender's send buffer and
/// the receiver's receive buffer, each at its largest (`tcp_wmem`, `tcp_rmem`).
fn socket_buffers() -> u64 {
    let largest = |name: &str| -> u64 {
        let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).unwrap();
        text.split_whitespace().last().unwrap().parse().unwrap()
    };
    largest("tcp_wmem") + largest("tcp_rmem")
}

/// The read calls of a process, traced by strace (every thread, those it starts too) from
/// `attach` to `bytes`. Not `rchar` of /proc/<pid>/io: it counts read(2) and pread(2) but
/// not recv(2), which is how Rust reads a socket.
struct ReadTrace {
    strace: std::process::Child,
    out: std::path::PathBuf,
}

/// The calls that read: files and sockets.
const READ_CALLS: &str = "trace=read,readv,pread64,preadv,preadv2,recvfrom,recvmsg,recvmmsg";

impl ReadTrace {
    /// Attaches to every thread of `pid`; returns once each is traced.
    fn attach(pid: u32, dir: &TempDir) -> ReadTrace {
        let out = dir.join("reads.strace");
        let strace = std::process::Command::new("strace")
            .args([
                "-f",
                "-qq",
                "-s",
                "0",
                "-e",
                READ_CALLS,
                "-e",
                "signal=none",
                "-o",
            ])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("strace (tests/services/up.sh installs it)");
        let tracer = format!("TracerPid:\t{}", strace.id());
        let traced = || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap()
                .map(|t| std::fs::read_to_string(t.unwrap().path().join("status")))
                .all(|status| status.is_ok_and(|s| s.contains(&tracer)))
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !traced() {
            assert!(Instant::now() < deadline, "strace did not attach");
            std::thread::sleep(Duration::from_millis(20));
        }
        ReadTrace { strace, out }
    }

    /// Detaches; the bytes the traced calls returned.
    fn bytes(mut self) -> u64 {
        let interrupted = std::process::Command::new("kill")
            .args(["-INT", &self.strace.id().to_string()])
            .status()
            .unwrap();
        assert!(interrupted.success());
        self.strace.wait().unwrap();
        let text = std::fs::read_to_string(&self.out).unwrap();
        // `pid recvfrom(7, ""..., 1024, 0, NULL, NULL) = 1024`; an unfinished call returns
        // on its `<... resumed>` line; a failed one returns -1.
        text.lines()
            .filter_map(|l| l.rsplit_once(") = "))
            .filter_map(|(_, ret)| ret.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }
}

/// A 1 GiB body, declared (`Content-Length: 1073741824`) or chunked, streamed at mxisd
/// until it stops taking it: 413, the connection closed, and what the client could push
/// into it at most `maxBodyBytes` plus what the two sockets' buffers hold (the kernel
/// takes that much whatever the server reads). And on the server's side, what mxisd
/// itself read meanwhile (its read calls, traced): at most the limit, one fill of its connection's 1 KiB
/// read buffer, the drain after the answer (at most 64 KiB and one 4 KiB read: closing on
/// unread bytes would reset the connection before the client read its 413, tiny_http's
/// `client.rs`), and a slack of 16 KiB for the head, the chunk-size lines and what the
/// quiet server's own jobs read meanwhile (its SQLite state). So mxisd stopped reading at
/// its limit, whatever the client pushed.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn request_size_exhaustion_1gb_body_413() {
    const LIMIT: u64 = 65_536;
    const GIB: u64 = 1 << 30;
    const BUFFER: u64 = 1024;
    const DRAIN: u64 = 64 * 1024 + 4096;
    const SLACK: u64 = 16 * 1024;
    let s = Mxisd::start(&format!(
        "http:\n  maxBodyBytes: {LIMIT}\n  requestTimeout: 10\n"
    ));
    // Quiet: the first listing of the stores for the hash index is done.
    s.wait_hash_index();
    let buffers = socket_buffers();
    for chunked in [false, true] {
        let trace = ReadTrace::attach(s.pid(), &s.dir);
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_owned()
        } else {
            format!("Content-Length: {GIB}")
        };
        let mut conn = s.connect();
        conn.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = conn.try_clone().unwrap();
        reader
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        // The answer is read while the body is still being sent.
        let answer = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let n = reader.read(&mut buf).unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        conn.write_all(
            format!("POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n", support::V1_BULK_LOOKUP)
                .as_bytes(),
        )
        .unwrap();
        let data = vec![b'a'; 16_384];
        let piece = if chunked {
            let mut p = format!("{:x}\r\n", data.len()).into_bytes();
            p.extend_from_slice(&data);
            p.extend_from_slice(b"\r\n");
            p
        } else {
            data
        };
        let mut sent = 0u64;
        while sent < GIB && conn.write_all(&piece).is_ok() {
            sent += piece.len() as u64;
        }
        let answer = answer.join().unwrap();
        // The client's writes fail once mxisd closed the connection, after its last read.
        let read = trace.bytes();
        println!(
            "chunked {chunked}: {sent} bytes taken before the connection closed (socket buffers up to {buffers}); mxisd read {read}"
        );
        assert!(
            support::status_line(&answer).starts_with("HTTP/1.1 413"),
            "{answer}"
        );
        assert!(answer.contains("M_TOO_LARGE"), "{answer}");
        assert!(sent < GIB, "the whole GiB was taken");
        // The limit, one read of mxisd's buffer beyond it, and the kernel's buffers.
        assert!(
            sent <= LIMIT + 64 * 1024 + buffers,
            "{sent} bytes taken for a limit of {LIMIT}"
        );
        assert!(
            read <= LIMIT + BUFFER + DRAIN + SLACK,
            "mxisd read {read} bytes for a limit of {LIMIT}"
        );
    }
    assert_eq!(s.get("/_matrix/identity/versions").status, 200);
}

/// A POST inside mxisd's network namespace: (status, body).
fn ns_post(s: &Mxisd, path: &str, body: &Value) -> (u16, String) {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", s.pid()))
        .args(["curl", "-sS", "-m", "30", "-w", "\n%{http_code}"])
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(body.to_string())
        .arg(s.url(path))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// mxisd with `extra`, in a network namespace of its own holding only loopback
/// (`unshare -n`), so that even a broken guard could send no packet off the machine; names
/// from the test's `hosts` file (no DNS either).
fn start_in_own_netns(extra: &str, hosts: &std::path::Path) -> Mxisd {
    let hosts_env = format!("MXISD_HOSTS_FILE={}", hosts.display());
    Mxisd::start_wrapped(
        extra,
        &[
            "env",
            &hosts_env,
            "unshare",
            "-n",
            "sh",
            "-c",
            "ip link set lo up && exec \"$@\"",
            "sh",
        ],
    )
}

/// `matrix_server_name` (v2 register) naming the cloud metadata address, a private
/// address, loopback written as an IPv4-mapped IPv6 address, and names resolving to a
/// private and a link-local address: refused by the outbound address policy before any
/// connection, the client told nothing of why. mxisd runs in a network namespace holding
/// only loopback (`unshare -n`), so that even a broken guard could send no packet off the
/// machine; the names come from a hosts file of the test (no DNS either).
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn ssrf_matrix_server_name_private_targets_refused() {
    let dir = TempDir::new();
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        "10.20.30.40 ten.advisory.test\n169.254.169.254 metadata.advisory.test\n",
    )
    .unwrap();
    let s = start_in_own_netns(&federation_config(""), &hosts);
    for (server, address, rule) in [
        ("169.254.169.254", "169.254.169.254", "link-local"),
        ("10.1.2.3:8448", "10.1.2.3", "private"),
        ("[::ffff:127.0.0.1]:8448", "127.0.0.1", "loopback"),
        ("ten.advisory.test", "10.20.30.40", "private"),
        ("metadata.advisory.test:80", "169.254.169.254", "link-local"),
    ] {
        let body = json!({"access_token": "t", "token_type": "Bearer", "matrix_server_name": server, "expires_in": 3600});
        let (status, text) = ns_post(&s, "/_matrix/identity/v2/account/register", &body);
        assert_eq!(status, 502, "{server}: {text}\n{}", s.log());
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            answer["error"], "homeserver unreachable or refused by policy",
            "{server}"
        );
        assert!(!text.contains(address), "{server}: {text}");
        assert!(
            s.wait_for_log(&format!(
                "{address} is a {rule} address, refused by the outbound address policy"
            )),
            "{server}: {}",
            s.log()
        );
    }
    // Refused before connecting: no attempt ever failed on the (absent) network.
    for attempt in [
        "Network is unreachable",
        "os error",
        "timed out",
        "Connection refused",
    ] {
        assert!(!s.log().contains(attempt), "{attempt}: {}", s.log());
    }
}

/// onbind (and whatever it would fetch first) to an invitee's homeserver on a private
/// address, the cloud metadata address, loopback written as an IPv4-mapped IPv6 address,
/// or a name resolving to a private address: refused by the outbound address policy before
/// any connection, nothing sent, and the queue item backed off and tried again later, as
/// for a homeserver that is down (README "Invites by e-mail"), refused again each time. The
/// invitees are found by the invite resolution in a Synapse database (a file: no network).
/// mxisd runs in a network namespace holding only loopback, as above.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn ssrf_onbind_private_targets_refused() {
    let dir = TempDir::new();
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "10.20.30.40 ten.advisory.test\n").unwrap();
    let db = support::synapse_sqlite(&dir, &[]);
    let s = start_in_own_netns(
        &format!(
            "synapseSql:\n  enabled: true\n  type: sqlite\n  connection: '{db}'\nlookup:\n  recursive:\n    enabled: false\ninvite:\n  resolution:\n    timer: 1\n    period: seconds\n  retry:\n    first: 1\n    max: 1\n{}",
            federation_config("")
        ),
        &hosts,
    );
    let targets = [
        ("10.1.2.3:8448", "10.1.2.3", "private"),
        ("169.254.169.254", "169.254.169.254", "link-local"),
        ("[::ffff:127.0.0.1]:8448", "127.0.0.1", "loopback"),
        ("ten.advisory.test:8448", "10.20.30.40", "private"),
    ];
    let run = format!("advonbind{}x{}", std::process::id(), mxisd::now_ms());
    let synapse = rusqlite::Connection::open(&db).unwrap();
    for (i, (server, _, _)) in targets.iter().enumerate() {
        let address = format!("{run}-{i}@example.net");
        let invite = json!({
            "medium": "email", "address": address, "room_id": "!room:example.org",
            "sender": "@alice:example.org",
        });
        let (status, text) = ns_post(&s, &format!("{V1}/store-invite"), &invite);
        assert_eq!(status, 200, "{server}: {text}\n{}", s.log());
        // The directory gains the invitee, on the target homeserver.
        synapse
            .execute(
                "INSERT INTO user_threepids VALUES (?1, 'email', ?2, 0, 0)",
                rusqlite::params![format!("@invitee{i}:{server}"), address],
            )
            .unwrap();
    }
    for (server, address, rule) in targets {
        assert!(
            s.wait_for_log(&format!(
                "{address} is a {rule} address, refused by the outbound address policy"
            )),
            "{server}: {}",
            s.log()
        );
        // Backed off, then refused again: never sent, never given up.
        assert!(
            s.wait_for_log(&format!(
                "(attempt 2): sending failed: homeserver {server}: "
            )),
            "{server}: {}",
            s.log()
        );
    }
    let log = s.log();
    let onbind: Vec<&str> = log.lines().filter(|l| l.contains("onbind")).collect();
    for line in &onbind {
        assert!(line.contains("; again in 1 s"), "{line}");
        // Refused before connecting: no attempt failed on the (absent) network.
        for attempt in [
            "Network is unreachable",
            "os error",
            "timed out",
            "Connection refused",
        ] {
            assert!(!line.contains(attempt), "{attempt}: {line}");
        }
    }
    assert!(!log.contains("invites delivered"), "{log}");
    assert!(!log.contains("not sent again"), "{log}");
}

fn invite_config() -> String {
    format!(
        "threepid:\n  medium:\n    email:\n      identity:\n        from: 'identity@example.org'\n        name: 'Example Identity'\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {}\n          tls: 0\n{}",
        get("SMTP_PORT"),
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    )
}

/// store-invite with `fields` over a plain invite to `address`; its one mail.
fn invite_mail(s: &Mxisd, address: &str, fields: &Value) -> String {
    let mut body = json!({
        "medium": "email", "address": address, "room_id": "!room:example.org",
        "sender": "@alice:example.org",
    });
    for (k, v) in fields.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = s.post(&format!("{V1}/store-invite"), &body.to_string());
    assert_eq!(r.status, 200, "{}", r.text);
    let mails = wait_for(address, 1);
    assert_eq!(mails.len(), 1, "{}", s.log());
    mails[0].clone()
}

/// The parts of a decoded multipart mail: (Content-Type, body).
fn parts(mail: &str, boundary: &str) -> Vec<(String, String)> {
    // A delimiter starts its line (RFC 2046 5.1.1).
    let delimiter = format!("\n--{boundary}");
    mail.split(&delimiter)
        .skip(1)
        .filter(|p| !p.starts_with("--"))
        .filter_map(|p| {
            let (head, body) = p.trim_start_matches('\n').split_once("\n\n")?;
            let kind = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Type: "))?
                .to_owned();
            Some((kind, body.to_owned()))
        })
        .collect()
}

/// The mail's head: its header lines, unfolded.
fn head_of(mail: &str) -> String {
    let mail = mail.replace("\r\n", "\n");
    mail.split_once("\n\n").unwrap().0.replace("\n ", " ")
}

/// `room_name` and `sender_display_name` carrying HTML, CRLF with headers after them, and
/// the template's MIME boundary: the subject one line, no header and no recipient added, no
/// part added, the HTML part escaped; and in every part, text and HTML, each value is one
/// line (its line breaks spaces, as in headers), so it starts no line of its own.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn invite_mail_content_escaped_html_crlf_mime() {
    let s = Mxisd::start(&invite_config());
    let address = crate::support::mail::fresh_address("advinv", "example.net");
    let victim = crate::support::mail::fresh_address("advvictim", "example.net");
    let hostile = format!(
        "<script>alert(1)</script>\r\nBcc: {victim}\r\n\r\n--mxisd-invite-9b2c\r\nContent-Type: text/html\r\n\r\n<b>x</b>"
    );
    let mail = invite_mail(
        &s,
        &address,
        &json!({"room_name": hostile, "sender_display_name": hostile}),
    );
    crate::support::mail::assert_headers_fit(&mail);
    let head = head_of(&mail);
    assert!(
        !head.lines().any(|l| l.starts_with("Bcc:")),
        "a header was added: {head}"
    );
    // The sink names each mail's envelope recipients (X-RcptTo): never the Bcc.
    for m in mails_to(&victim) {
        let rcpt = m
            .lines()
            .find(|l| l.starts_with("X-RcptTo:"))
            .unwrap_or_default();
        assert!(!rcpt.contains(&victim), "a mail went to the Bcc: {rcpt}");
    }
    let text = decoded(&mail);
    // The template's own boundary lines only: two delimiters and the close.
    let boundaries = text
        .lines()
        .filter(|l| l.starts_with("--mxisd-invite-9b2c"))
        .count();
    assert_eq!(boundaries, 3, "{text}");
    let parts = parts(&text, "mxisd-invite-9b2c");
    assert_eq!(parts.len(), 2, "{text}");
    let kinds: Vec<&str> = parts.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["text/plain; charset=UTF-8", "text/html; charset=UTF-8"],
        "{text}"
    );
    for (kind, body) in &parts {
        if kind.starts_with("text/html") {
            assert!(!body.contains("<script"), "{body}");
            assert!(!body.contains("<b>x"), "{body}");
            assert!(body.contains("&lt;script&gt;"), "{body}");
        }
    }
    // Each value one line in every part: each run of line breaks a space.
    let one_line = format!(
        "<script>alert(1)</script> Bcc: {victim} --mxisd-invite-9b2c Content-Type: text/html <b>x</b>"
    );
    let escaped = format!(
        "&lt;script&gt;alert(1)&lt;/script&gt; Bcc: {victim} --mxisd-invite-9b2c Content-Type: text/html &lt;b&gt;x&lt;/b&gt;"
    );
    for (kind, body) in &parts {
        let expected = if kind.starts_with("text/html") {
            &escaped
        } else {
            &one_line
        };
        // Twice: the sender's name and the room's.
        assert_eq!(body.matches(expected.as_str()).count(), 2, "{kind}: {body}");
        for line in body.lines() {
            for start in [
                "Bcc:",
                "--mxisd-invite-9b2c",
                "Content-Type:",
                "<b>x",
                "&lt;b&gt;x",
            ] {
                assert!(
                    !line.starts_with(start),
                    "{kind}: a value starts a line: {line}"
                );
            }
        }
    }
}

/// A `room_id` carrying HTML (and no room name, so the mail names the room by its id):
/// escaped in the HTML part, percent-encoded in the join link.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn html_injection_room_id_into_mail() {
    let s = Mxisd::start(&invite_config());
    let address = crate::support::mail::fresh_address("advroom", "example.net");
    let room_id = "!<img src=x onerror=alert(1)>\"'&x:example.org";
    let mail = invite_mail(&s, &address, &json!({"room_id": room_id}));
    let text = decoded(&mail);
    let parts = parts(&text, "mxisd-invite-9b2c");
    let html = &parts
        .iter()
        .find(|(k, _)| k.starts_with("text/html"))
        .unwrap_or_else(|| panic!("no HTML part: {text}"))
        .1;
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&lt;img"), "{html}");
    // The join link: one attribute value, the room id inside percent-encoded.
    let href = html
        .split("href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(!href.contains('<') && !href.contains('\''), "{href}");
}

/// `count` validation sessions for addresses of their own: (sid, token) of each.
fn sessions(s: &Mxisd, count: usize) -> Vec<(String, String)> {
    let run = format!("advrng{}x{}", std::process::id(), mxisd::now_ms());
    let sids: Vec<String> = (0..count)
        .map(|i| {
            let r = request_email(s, &format!("{run}-{i}@example.org"), "rng", 1);
            assert_eq!(r.status, 200, "{}", r.text);
            r.json()["sid"].as_str().unwrap().to_owned()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut mails = mails_to(&run);
    while mails.len() < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        mails = mails_to(&run);
    }
    assert_eq!(mails.len(), count);
    let tokens: Vec<(String, String)> = mails
        .iter()
        .map(|m| {
            let link = link_in(m);
            (param(&link, "sid"), param(&link, "token"))
        })
        .collect();
    // Each mail carries the sid its request answered.
    let mut from_mails: Vec<&String> = tokens.iter().map(|(sid, _)| sid).collect();
    let mut answered: Vec<&String> = sids.iter().collect();
    from_mails.sort();
    answered.sort();
    assert_eq!(from_mails, answered);
    tokens
}

const MANY: usize = 100;

fn many_sessions_config() -> String {
    mail_config("session:\n  rateLimit:\n    perClient: { burst: 1000, perMinute: 10 }\n")
}

fn alphanumeric(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Tokens in mails: 32 characters of [A-Za-z0-9] drawn from the kernel's CSPRNG (190
/// bits), all different, and different from their sids; no token is shared by two
/// sessions nor derived from another (no common prefix of 8 between any two).
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn predictable_tokens_os_rng() {
    let s = Mxisd::start(&many_sessions_config());
    let pairs = sessions(&s, MANY);
    let mut tokens: Vec<&str> = pairs.iter().map(|(_, t)| t.as_str()).collect();
    for t in &tokens {
        assert!(alphanumeric(t, 32), "{t}");
    }
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), MANY, "a token repeated");
    for w in tokens.windows(2) {
        assert_ne!(w[0][..8], w[1][..8], "two tokens share a prefix");
    }
    // Every character of the alphabet is drawn: 3,200 draws of 62 (a missing one is a
    // broken draw; chance of a miss by luck below 1e-20).
    let mut seen = std::collections::HashSet::new();
    tokens.iter().for_each(|t| seen.extend(t.bytes()));
    assert_eq!(seen.len(), 62);
}

/// Session ids: 24 characters of [A-Za-z0-9] (143 bits), all different, no two sharing a
/// prefix, none a number, and none following another as a counter would.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn sequential_session_ids() {
    let s = Mxisd::start(&many_sessions_config());
    let sids: Vec<String> = sessions(&s, MANY).into_iter().map(|(sid, _)| sid).collect();
    for sid in &sids {
        assert!(alphanumeric(sid, 24), "{sid}");
        assert!(sid.parse::<u128>().is_err(), "{sid}");
    }
    let mut sorted = sids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), sids.len(), "a sid repeated");
    for w in sorted.windows(2) {
        assert_ne!(w[0][..8], w[1][..8], "two sids share a prefix");
    }
    // Consecutive sids differ in most places, as independent draws do (a counter changes
    // the last one or two).
    for w in sids.windows(2) {
        let same = w[0]
            .bytes()
            .zip(w[1].bytes())
            .filter(|(a, b)| a == b)
            .count();
        assert!(same < 12, "{} then {}", w[0], w[1]);
    }
}

/// What a browser or client must never see: our source, a panic, a Rust type.
const INTERNALS: &[&str] = &[
    "panicked",
    "RUST_BACKTRACE",
    ".rs:",
    "/src/",
    "/work/",
    "/home/",
    "/tmp/",
    "src\\",
    "thread '",
    "Error {",
    "Os {",
    "serde",
    "tiny_http",
    "rusqlite",
    "core::",
    "std::",
    "mxisd::",
    "Some(",
    "None",
    "Utf8Error",
];

fn assert_no_internals(what: &str, answer: &str) {
    for leak in INTERNALS {
        assert!(!answer.contains(leak), "{what} shows {leak:?}: {answer}");
    }
}

/// The status of a raw HTTP answer.
fn status_of(answer: &str) -> u16 {
    support::status_line(answer)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Bad GETs of the session pages (the link in a mail, the remote workflow's pages) and
/// malformed requests: answered by our pages and errors, never with internals.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn tracebacks_never_shown() {
    let s = Mxisd::start(&mail_config(""));
    let long = "a".repeat(5000);
    let gets = [
        format!("{V1}/validate/email/submitToken"),
        format!("{V1}/validate/email/submitToken?sid=&client_secret=&token="),
        format!("{V1}/validate/email/submitToken?sid=../../etc/passwd&client_secret=%00&token=%ff"),
        format!("{V1}/validate/email/submitToken?sid=%ZZ&client_secret=%&token=%E2%82"),
        format!("{V1}/validate/email/submitToken?sid={long}&client_secret={long}&token={long}"),
        format!("{V1}/validate/msisdn/submitToken?sid=x&client_secret=y&token=<script>"),
        "/_matrix/identity/remote/1.0/validate/check?sid=x&client_secret=y".to_owned(),
        "/_matrix/identity/remote/1.0/validate/requestToken?sid=%ff&client_secret=%00".to_owned(),
        format!("{V1}/3pid/getValidated3pid?sid=%ff&client_secret=%00"),
        "/_matrix/identity/v2/hash_details".to_owned(),
        "/_matrix/identity/api/v1/lookup?medium=email&address=%ff%fe".to_owned(),
        "/_matrix/identity/%2e%2e/%2e%2e/etc/passwd".to_owned(),
        "/_matrix/identity/api/v1/pubkey/%ff".to_owned(),
    ];
    for path in &gets {
        // Sent as written: no client library would send some of these.
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = support::raw_exchange(&s, request.as_bytes());
        let status = status_of(&answer);
        assert!((400..500).contains(&status), "{path}: {answer}");
        assert_no_internals(path, &answer);
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies = [
        "",
        "{",
        "null",
        "[]",
        "{\"client_secret\": 1, \"email\": [], \"send_attempt\": \"x\"}",
        "{\"client_secret\": \"a\", \"email\": \"a@example.org\", \"send_attempt\": 1e400}",
        "{\"client_secret\": \"a\", \"email\": \"a@example.org\", \"send_attempt\": -99999999999999999999}",
        "{\"sid\": \"\\ud800\", \"client_secret\": \"a\", \"token\": \"b\"}",
        deep.as_str(),
    ];
    let posts = [
        format!("{V1}/validate/email/requestToken"),
        format!("{V1}/validate/email/submitToken"),
        format!("{V1}/validate/msisdn/requestToken"),
        format!("{V1}/store-invite"),
        format!("{V1}/bulk_lookup"),
        "/_matrix/identity/v2/account/register".to_owned(),
    ];
    for path in &posts {
        for body in &bodies {
            let r = s.post(path, body);
            assert!(r.status < 500, "{path} {:.40}: {}", body, r.status);
            assert_no_internals(path, &r.text);
        }
        // A body that is not UTF-8.
        let raw = Response::from(
            support::agent()
                .post(s.url(path))
                .header("Content-Type", "application/json")
                .send(&[0xff, 0xfe, b'{', 0x80][..]),
        );
        assert!(raw.status < 500, "{path}: {}", raw.status);
        assert_no_internals(path, &raw.text);
    }
    assert!(!s.log().contains("panicked"), "{}", s.log());
    assert_eq!(s.get("/_matrix/identity/versions").status, 200);
}

/// Addresses that are not one plain `local@domain` a mail can go to (a header, a second
/// recipient, a display name, a route, a quoted or internationalised local part): 400
/// M_INVALID_EMAIL, and nothing sent.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn malformed_email_addresses_refused() {
    let s = Mxisd::start(&mail_config(""));
    let victim = fresh_address("advmalformed");
    let (local, domain) = victim.split_once('@').unwrap();
    let bad = [
        String::new(),
        " ".to_owned(),
        "plain".to_owned(),
        format!("@{domain}"),
        format!("{local}@"),
        format!("{local}@@{domain}"),
        format!("{local}@{domain}\r\nBcc: {victim}"),
        format!("{local}@{domain}\nX: y"),
        format!("a@example.org, {victim}"),
        format!("a@example.org;{victim}"),
        format!("Victim <{victim}>"),
        format!("<{victim}>"),
        format!("\"{local}\"@{domain}"),
        format!("{local} x@{domain}"),
        format!("{local}@{domain} x"),
        format!("{local}(comment)@{domain}"),
        format!("@evil.example:{victim}"),
        format!("{local}@[127.0.0.1]"),
        format!("{local}@localhost"),
        format!("{local}@-{domain}"),
        format!(".{local}@{domain}"),
        format!("{local}..x@{domain}"),
        format!("{local}\u{0}@{domain}"),
        format!("jos\u{e9}{local}@{domain}"),
        format!("{}@{domain}", "a".repeat(65)),
        format!("{local}@{}.org", "a".repeat(500)),
    ];
    for address in &bad {
        request_email(&s, address, "malformed", 1).assert_error(400, "M_INVALID_EMAIL");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(mails_to(&victim).is_empty(), "a mail was sent");
    assert!(!s.log().contains("could not be sent"), "{}", s.log());
}

/// requestToken's `next_link` under `session.nextLink.allowedHosts`: a listed host is
/// accepted and redirected to; any other host, or a link a browser could read as another
/// host, is 400 M_INVALID_PARAM naming next_link (logged); a link stored before the list
/// was set is not followed once it is (the success page instead, logged); an empty list
/// accepts none. Without the list, any http(s) link, as before (`sessions.rs`).
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn open_redirect_next_link() {
    let state = TempDir::new();
    let storage = format!(
        "storage:\n  provider:\n    sqlite:\n      database: '{}'\n",
        state.join("mxisd.db").display()
    );
    // Before the list: a link to another host is stored.
    let open = Mxisd::start(&mail_config(&storage));
    let early = fresh_address("advnl");
    let r = request_email_next(&open, &early, "https://evil.example/login");
    assert_eq!(r.status, 200, "{}", r.text);
    let early_link = link_in(&wait_for(&early, 1)[0]);
    drop(open);

    let listed =
        format!("{storage}session:\n  nextLink:\n    allowedHosts: ['App.Example.org', '::1']\n");
    let s = Mxisd::start(&mail_config(&listed));
    let agent = support::agent_without_redirects();
    let open_link = |link: &str| {
        Response::from(
            agent
                .get(s.url(link.trim_start_matches("https://example.org")))
                .call(),
        )
    };
    let r = open_link(&early_link);
    assert_eq!(r.status, 200, "no redirect: {}\n{}", r.text, s.log());
    assert_eq!(r.header("Location"), None);
    assert!(r.text.contains("Address confirmed"), "{}", r.text);
    assert!(
        s.wait_for_log("no redirect to its stored next_link: next_link's host 'evil.example'"),
        "{}",
        s.log()
    );

    let email = fresh_address("advnl");
    let r = request_email_next(&s, &email, "https://app.EXAMPLE.org:8443/done?x=1");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = open_link(&link_in(&wait_for(&email, 1)[0]));
    assert_eq!(r.status, 302, "{}", r.text);
    assert_eq!(
        r.header("Location"),
        Some("https://app.EXAMPLE.org:8443/done?x=1")
    );

    for refused in [
        "https://evil.example/",
        "https://app.example.org.evil.example/",
        "https://x.app.example.org/",
        "https://app.example.org@evil.example/",
        "https://evil.example\\@app.example.org/",
        "https://app%2Eexample.org/",
        "javascript:alert(1)//app.example.org",
        "data:text/html,app.example.org",
        "file:///etc/passwd",
    ] {
        let victim = fresh_address("advnl");
        let r = request_email_next(&s, &victim, refused);
        r.assert_error(400, "M_INVALID_PARAM");
        assert!(
            r.json()["error"].as_str().unwrap().starts_with("next_link"),
            "{}",
            r.text
        );
        assert!(mails_to(&victim).is_empty(), "{refused}: a mail was sent");
    }
    assert!(
        s.log().contains("requestToken refused: next_link's host 'evil.example' is not one this server redirects to"),
        "{}",
        s.log()
    );
    drop(s);

    let none = Mxisd::start(&mail_config(
        "session:\n  nextLink:\n    allowedHosts: []\n",
    ));
    let r = request_email_next(&none, &fresh_address("advnl"), "https://app.example.org/");
    r.assert_error(400, "M_INVALID_PARAM");
    assert_eq!(
        r.json()["error"],
        "next_link is not accepted by this server"
    );
    // Without a next_link, sessions work as ever.
    assert_eq!(
        request_email(&none, &fresh_address("advnl"), "x", 1).status,
        200
    );
}

/// 10,000 requestTokens for one address (other secrets, rising send_attempts): past the
/// address's burst, 429 M_LIMIT_EXCEEDED, and the address gets the burst of mails, not a
/// storm (one more per minute the flood lasts, the default refill).
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn request_token_flood_429_no_mail_storm() {
    let s = Mxisd::start(&mail_config(""));
    let email = fresh_address("advflood");
    let started = Instant::now();
    let mut ok = 0u64;
    let mut limited = 0u64;
    for i in 0..10_000i64 {
        let r = request_email(&s, &email, &format!("flood{}", i % 100), i / 100 + 1);
        match r.status {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("request {i}: {other} {}", r.text),
        }
    }
    let minutes = started.elapsed().as_secs() / 60 + 1;
    println!(
        "10,000 requestTokens in {:?}: {ok} answered 200, {limited} 429",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_millis(1000));
    let mails = mails_to(&email).len() as u64;
    assert!(mails >= 3, "the burst is sent: {mails}");
    assert!(mails <= 3 + minutes, "{mails} mails in {minutes} minute(s)");
    assert!(ok <= 3 + minutes, "{ok} answered 200 (sent)");
    assert_eq!(ok + limited, 10_000);
    assert_eq!(s.get("/_matrix/identity/versions").status, 200);
}
