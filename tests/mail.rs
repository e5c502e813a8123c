//! Mail connectors against the real binary: a stalled relay holds at most its share of the
//! workers (`http.connectorWorkers`), an empty SMTP login means no authentication, and an
//! operator's 8bit template with a long line still goes within SMTP's line limit.

use crate::support::mail::{assert_lines_fit, decoded, link_in, param, wait_for};
use crate::support::services::get;
use crate::support::{Mxisd, Response, TempDir};
use serde_json::json;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const V1: &str = "/_matrix/identity/api/v1";

fn fresh_address() -> String {
    crate::support::mail::fresh_address("mail", "example.org")
}

fn request_token(s: &Mxisd, email: &str) -> Response {
    s.post(
        &format!("{V1}/validate/email/requestToken"),
        &json!({"client_secret": "secret", "email": email, "send_attempt": 1}).to_string(),
    )
}

/// A relay that accepts connections and never says a word, until released.
struct StalledRelay {
    port: u16,
    held: Arc<Mutex<Vec<TcpStream>>>,
    accepted: std::sync::mpsc::Receiver<()>,
}

impl StalledRelay {
    fn start() -> StalledRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = Arc::new(Mutex::new(Vec::new()));
        let (tx, accepted) = channel();
        let h = held.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                h.lock().unwrap().push(conn);
                let _ = tx.send(());
            }
        });
        StalledRelay {
            port,
            held,
            accepted,
        }
    }

    /// Closes every connection it holds: their sends fail at once.
    fn release(&self) {
        for c in self.held.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// With 4 workers the connectors may hold 2: four requestTokens to a relay that never
/// answers stall two (still pending) and the other two are answered 503 at once; a lookup
/// and a pubkey request are answered while the two still wait. Orders, not timings: every
/// answer asserted here arrives before the stalled ones, which end only when the relay is
/// released.
#[test]
fn a_stalled_relay_holds_only_its_share_of_the_workers() {
    let relay = StalledRelay::start();
    let s = Arc::new(Mxisd::start(&format!(
        "http:\n  workers: 4\nthreepid:\n  medium:\n    email:\n      identity:\n        from: 'identity@example.org'\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {}\n          tls: 0\n          timeout: 120\n",
        relay.port
    )));
    let (answers, answered) = channel();
    for _ in 0..4 {
        let (s, answers) = (s.clone(), answers.clone());
        std::thread::spawn(move || {
            let r = request_token(&s, &fresh_address());
            let _ = answers.send((r.status, r.text));
        });
    }
    drop(answers); // the channel ends when the four requests have answered
                   // Two reach the relay and stall; the other two are refused without waiting.
    for _ in 0..2 {
        relay
            .accepted
            .recv_timeout(Duration::from_secs(60))
            .expect("a requestToken at the relay");
    }
    for _ in 0..2 {
        let (status, text) = answered
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no answer while the relay stalls:\n{}", s.log()));
        assert_eq!(status, 503, "{text}");
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["errcode"], "M_UNKNOWN", "{text}");
    }
    assert!(s.wait_for_log("http.connectorWorkers"), "{}", s.log());
    // The rest of the API still answers.
    let r = s.get(&format!(
        "{V1}/lookup?medium=email&address=nobody%40example.org"
    ));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.get(&format!("{V1}/pubkey/ed25519:0"));
    assert_eq!(r.status, 200, "{}", r.text);
    // More are refused at once too, and the warning does not make a line of each: at
    // most one per 10 s (the bound allows for a slow run), saying how many it stands for.
    for _ in 0..20 {
        request_token(&s, &fresh_address()).assert_error(503, "M_UNKNOWN");
    }
    let log = s.log();
    let lines = log
        .matches("already wait on the mail and SMS connectors")
        .count();
    assert!((1..=4).contains(&lines), "{lines} lines:\n{log}");
    assert!(
        log.contains("sends refused since the last such line"),
        "{log}"
    );
    // ... all while the stalled ones still wait.
    assert_eq!(
        answered.try_recv().err(),
        Some(std::sync::mpsc::TryRecvError::Empty),
        "a stalled requestToken ended before the others were answered"
    );
    assert_eq!(
        relay.accepted.try_recv().err(),
        Some(std::sync::mpsc::TryRecvError::Empty)
    );
    relay.release();
    for _ in 0..2 {
        let (status, text) = answered
            .recv_timeout(Duration::from_secs(60))
            .expect("the stalled requestTokens end once the relay closes");
        assert_eq!(status, 500, "{text}");
    }
    // The two stalled requests were the only ones still unanswered: no fifth answer.
    assert_eq!(
        answered.recv_timeout(Duration::from_secs(10)).err(),
        Some(RecvTimeoutError::Disconnected)
    );
}

/// `login: ''` (and an empty password), common in mxisd configs: the start goes on and
/// mails go without AUTH (the test sink offers none).
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_empty_smtp_login_means_no_authentication() {
    let s = Mxisd::start(&format!(
        "threepid:\n  medium:\n    email:\n      identity:\n        from: 'identity@example.org'\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {}\n          tls: 0\n          login: ''\n          password: ''\n",
        get("SMTP_PORT")
    ));
    let email = fresh_address();
    let r = request_token(&s, &email);
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    assert_eq!(wait_for(&email, 1).len(), 1);
}

/// A mail sent with an operator's validation template: the server (with the template's
/// directory), the address, the session's sid and the one mail received.
struct TemplatedMail {
    s: Mxisd,
    _dir: TempDir,
    email: String,
    sid: String,
    mail: String,
}

/// Starts mxisd with `template` as its validation template and asks a validation of a
/// fresh address.
fn mail_of_template(template: &str) -> TemplatedMail {
    let dir = TempDir::new();
    let path = dir.path().join("validate.eml");
    std::fs::write(&path, template).unwrap();
    let s = Mxisd::start(&format!(
        "threepid:\n  medium:\n    email:\n      identity:\n        from: 'identity@example.org'\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {}\n          tls: 0\n      generators:\n        template:\n          session:\n            validation: '{}'\n",
        get("SMTP_PORT"),
        path.display()
    ));
    let email = fresh_address();
    let r = request_token(&s, &email);
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    let sid = r.json()["sid"].as_str().unwrap().to_owned();
    let mut mails = wait_for(&email, 1);
    assert_eq!(mails.len(), 1);
    assert_lines_fit(&mails[0]);
    TemplatedMail {
        s,
        _dir: dir,
        email,
        sid,
        mail: mails.remove(0),
    }
}

impl TemplatedMail {
    /// The validation link in the decoded mail after `after`, followed: it validates the
    /// session.
    fn assert_link_validates(&self, after: &str) {
        let mail = decoded(&self.mail);
        assert!(mail.contains(after), "{mail}");
        let link = link_in(mail.split_once(after).unwrap().1);
        assert_eq!(param(&link, "sid"), self.sid);
        let r = self.s.get(link.trim_start_matches("https://example.org"));
        assert_eq!(r.status, 200, "{}", r.text);
        let v = self
            .s
            .get(&format!(
                "{V1}/3pid/getValidated3pid?sid={}&client_secret=secret",
                self.sid
            ))
            .json();
        assert_eq!(v["address"], self.email, "{v}");
    }
}

/// An operator's validation template declaring 8bit with a line longer than SMTP allows:
/// sent quoted-printable (the declaration rewritten), every raw line within the limit, and
/// the link, decoded, validates the session.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_operator_8bit_template_with_a_long_line_goes_quoted_printable() {
    let long = "Überprüfung Ihrer Adresse für diesen Server. ".repeat(40);
    let m = mail_of_template(&format!("Subject: Bitte bestätigen\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n{long}%VALIDATION_LINK%\n"));
    assert!(
        m.mail
            .contains("Content-Transfer-Encoding: quoted-printable"),
        "{}",
        m.mail
    );
    m.assert_link_validates(&long);
}

/// An operator's validation template declaring quoted-printable whose own line (text and
/// link) is past 76 octets but within SMTP's 998: soft-wrapped at 76 (RFC 2045 6.7 rule 5),
/// no `=XX` split, and the link, decoded, validates the session.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_operator_quoted_printable_template_gets_lines_of_76() {
    let text = "Bitte best=C3=A4tigen Sie Ihre Adresse, indem Sie diesem Link folgen:";
    let m = mail_of_template(&format!("Subject: Bitte bestaetigen\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n\n{text} %VALIDATION_LINK%\n"));
    let raw = m.mail.replace("\r\n", "\n");
    let body = raw.split_once("\n\n").unwrap().1;
    for line in body.lines() {
        assert!(line.len() <= 76, "a line of {}: {line}\n{raw}", line.len());
    }
    m.assert_link_validates("Bitte bestätigen Sie");
}

/// An operator's validation template with a text part that declares no charset and an
/// embedded message (message/rfc822), both with a line past SMTP's limit: the text part
/// goes quoted-printable and says `charset=utf-8`; the message/rfc822 part is never given
/// quoted-printable (RFC 2046 5.2.1), its inner text part is rewritten instead. The link,
/// decoded, validates the session.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_rewritten_part_says_utf8_and_an_embedded_message_is_never_quoted_printable() {
    let long = "Überprüfung Ihrer Adresse für diesen Server. ".repeat(30);
    let m = mail_of_template(&format!("Subject: Bitte bestaetigen\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"outer\"\n\n--outer\nContent-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\n{long}%VALIDATION_LINK%\n--outer\nContent-Type: message/rfc822\n\nSubject: Weitergeleitet\nContent-Type: text/plain; charset=us-ascii\n\n{long}%VALIDATION_LINK%\n--outer--\n"));
    let raw = m.mail.replace("\r\n", "\n");
    let parts: Vec<&str> = raw.split("--outer").collect();
    assert_eq!(parts.len(), 4, "{raw}");
    let head = |p: &str| p.split_once("\n\n").unwrap().0.to_ascii_lowercase();
    let text = head(parts[1]);
    assert!(
        text.contains("content-transfer-encoding: quoted-printable"),
        "{raw}"
    );
    assert!(
        text.contains("content-type: text/plain; charset=utf-8"),
        "{raw}"
    );
    let message = head(parts[2]);
    assert!(message.contains("message/rfc822"), "{raw}");
    assert!(!message.contains("quoted-printable"), "{raw}");
    let inner = head(parts[2].split_once("\n\n").unwrap().1);
    assert!(
        inner.contains("content-transfer-encoding: quoted-printable"),
        "{raw}"
    );
    assert!(
        inner.contains("charset=utf-8") && !inner.contains("us-ascii"),
        "{raw}"
    );
    m.assert_link_validates(&long);
}
