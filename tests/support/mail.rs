//! The test SMTP sink (aiosmtpd, `tests/services/`): every mail it received is a file in a
//! Maildir. Tests send to addresses of their own and find their mails by recipient.

use super::services::{ensure_up, get};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn maildir() -> PathBuf {
    PathBuf::from(get("MXISD_TEST_DIR")).join("smtp/maildir/new")
}

/// Every mail so far whose envelope or headers name `to`.
pub fn mails_to(to: &str) -> Vec<String> {
    ensure_up();
    let needle = to.to_ascii_lowercase();
    let Ok(entries) = std::fs::read_dir(maildir()) else {
        return Vec::new();
    };
    let mut mails: Vec<(std::time::SystemTime, String)> = entries
        .flatten()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            let modified = e.metadata().and_then(|m| m.modified()).ok()?;
            text.to_ascii_lowercase()
                .contains(&needle)
                .then_some((modified, text))
        })
        .collect();
    mails.sort();
    mails.into_iter().map(|(_, text)| text).collect()
}

/// Waits (at most 10 s) until `count` mails to `to` arrived; all of them, oldest first.
pub fn wait_for(to: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mails = mails_to(to);
        if mails.len() >= count || Instant::now() > deadline {
            return mails;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The validation link in a mail (its first `https://…submitToken?…`).
pub fn link_in(mail: &str) -> String {
    let start = mail
        .find("https://")
        .unwrap_or_else(|| panic!("no link in:\n{mail}"));
    mail[start..]
        .split(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .next()
        .unwrap()
        .to_owned()
}

/// A query parameter of `url`.
pub fn param(url: &str, name: &str) -> String {
    url.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {url}"))
        .to_owned()
}

/// An SMTP sink of a test's own (aiosmtpd, the test CA's certificate): STARTTLS required
/// before any mail (`starttls`), or implicit TLS (`implicit`). Mails land in its own Maildir.
pub struct TlsSink {
    pub port: u16,
    child: std::process::Child,
    dir: super::TempDir,
}

impl TlsSink {
    pub fn start(implicit: bool) -> TlsSink {
        ensure_up();
        let port = super::free_port();
        let dir = super::TempDir::new();
        let tls = PathBuf::from(get("MXISD_TEST_DIR")).join("tls");
        let (cert_flag, key_flag) = if implicit {
            ("--smtpscert", "--smtpskey")
        } else {
            ("--tlscert", "--tlskey")
        };
        let child = std::process::Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .arg(cert_flag)
            .arg(tls.join("server.pem"))
            .arg(key_flag)
            .arg(tls.join("server.key"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.join("maildir"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsSink { port, child, dir }
    }

    /// How many mails arrived.
    pub fn count(&self) -> usize {
        std::fs::read_dir(self.dir.join("maildir/new"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for TlsSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A received mail with its quoted-printable and base64 parts decoded (headers and
/// other parts as they came), LF line ends: what a reader shows.
pub fn decoded(mail: &str) -> String {
    let mail = mail.replace("\r\n", "\n");
    let mut out = String::new();
    // Each piece between delimiter lines: headers (if any), a blank line, a body.
    let mut piece: Vec<&str> = Vec::new();
    let flush = |piece: &mut Vec<&str>, out: &mut String| {
        let text = piece.join("\n");
        piece.clear();
        let Some((head, body)) = text.split_once("\n\n") else {
            out.push_str(&text);
            out.push('\n');
            return;
        };
        let cte = head
            .to_ascii_lowercase()
            .lines()
            .find_map(|l| {
                l.strip_prefix("content-transfer-encoding:")
                    .map(|v| v.trim().to_owned())
            })
            .unwrap_or_default();
        out.push_str(head);
        out.push_str("\n\n");
        match cte.as_str() {
            "quoted-printable" => out.push_str(&decode_qp(body)),
            "base64" => {
                let clean: String = body.split_whitespace().collect();
                let bytes = mxisd::crypto::b64::decode(&clean).expect("base64 body");
                out.push_str(&String::from_utf8(bytes).expect("UTF-8 body"));
            }
            _ => out.push_str(body),
        }
        out.push('\n');
    };
    for line in mail.lines() {
        if line.starts_with("--") {
            flush(&mut piece, &mut out);
            out.push_str(line);
            out.push('\n');
        } else {
            piece.push(line);
        }
    }
    flush(&mut piece, &mut out);
    out
}

/// Quoted-printable text decoded (soft breaks joined, `=XX` undone).
fn decode_qp(body: &str) -> String {
    let mut bytes = Vec::new();
    for line in body.split('\n') {
        let (text, soft) = match line.strip_suffix('=') {
            Some(t) => (t, true),
            None => (line, false),
        };
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' {
                // Every `=` not ending a line starts `=XX`: anything else is a mail of ours
                // wrongly encoded, and fails here by name.
                let hex = text.get(i + 1..i + 3);
                let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                bytes.push(byte.unwrap_or_else(|| panic!("not =XX at {i} in {line:?}")));
                i += 3;
            } else {
                bytes.push(b[i]);
                i += 1;
            }
        }
        if !soft {
            bytes.push(b'\n');
        }
    }
    String::from_utf8(bytes).expect("UTF-8 text")
}

/// Every raw line of `mail` within SMTP's 998 octets (its CRLF not counted).
pub fn assert_lines_fit(mail: &str) {
    for line in mail.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let start: String = line.chars().take(80).collect();
        assert!(
            line.len() <= 998,
            "a line of {} octets: {start}…",
            line.len()
        );
    }
}

/// An address no other test (or earlier run) uses: `<prefix><pid>-<n>-<ms>@<domain>`.
pub fn fresh_address(prefix: &str, domain: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}{}-{}-{}@{domain}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        mxisd::now_ms()
    )
}

/// Every header line of `mail` (the message's and its parts') fit for RFC 2047 and 5322: a
/// line holding an encoded-word is at most 76 characters, each encoded-word at most 75, and
/// no control character but the line ends (a tab only as folding).
pub fn assert_headers_fit(mail: &str) {
    let mail = mail.replace("\r\n", "\n");
    let mut in_head = true;
    for line in mail.split('\n') {
        if line.is_empty() {
            in_head = false;
            continue;
        }
        if line.starts_with("--") {
            in_head = true;
            continue;
        }
        if !in_head {
            continue;
        }
        let controls = line.trim_start_matches('\t');
        assert!(
            !controls.chars().any(|c| c.is_ascii_control()),
            "a control character in a header line: {line:?}"
        );
        if line.contains("=?") {
            assert!(line.len() <= 76, "a line of {}: {line}", line.len());
            for word in line.split_whitespace().filter(|w| w.starts_with("=?")) {
                assert!(
                    word.len() <= 75,
                    "an encoded-word of {}: {word}",
                    word.len()
                );
            }
        }
    }
}
