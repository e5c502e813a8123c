//! The `smtp` connector: a small SMTP client of our own (RFC 5321) over std's blocking
//! sockets and rustls. mxisd's `tls` modes: none, STARTTLS if offered, STARTTLS required,
//! implicit TLS; certificates always checked (against `caFile`, else the system's CAs).
//!
//! Why not a mail crate: the one we tried writes the end-of-data marker as a small write of
//! its own on a socket without `TCP_NODELAY` (and gives no way to set it), so every message
//! waited for the server's delayed ACK: 40 ms per mail, which capped a worker at 25 mails a
//! second. Here each message is one write, commands are pipelined when the server offers
//! it (MAIL, RCPT and DATA in one round trip), and connections are kept and reused.
//!
//! Messages go as the generator wrote them (whole RFC 5322 messages with CRLF line ends);
//! the envelope is from the sender identity to the 3PID.

use super::{Connector, NotifyError};
use crate::config::{SmtpConfig, SmtpTls};
use crate::crypto::b64;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Connections kept open for reuse, at most.
const IDLE_MAX: usize = 16;
/// A kept connection unused for this long is closed rather than reused (servers drop idle
/// clients after a few minutes).
const IDLE_FOR: Duration = Duration::from_secs(30);
/// Why an exchange failed when its deadline passed.
const TOO_SLOW: &str = "the server took longer than the timeout";
/// Longest reply line accepted, and most lines in one reply.
const LINE_MAX: usize = 4096;
const LINES_MAX: usize = 100;

pub struct Smtp {
    cfg: SmtpConfig,
    tls: Option<Arc<ClientConfig>>,
    from: String,
    /// Our name in EHLO.
    hello: String,
    idle: Mutex<Vec<(Instant, Session)>>,
}

impl Smtp {
    /// `from`: the envelope sender (`threepid.medium.email.identity.from`).
    pub fn new(cfg: &SmtpConfig, from: &str) -> Result<Smtp, String> {
        if from.contains(['\r', '\n', '<', '>', ' ']) || !from.contains('@') {
            return Err(format!(
                "threepid.medium.email.identity.from '{from}' is not an e-mail address"
            ));
        }
        let tls = match cfg.tls {
            SmtpTls::None => None,
            _ => Some(Arc::new(crate::tls::verifying(
                cfg.ca_file.as_deref(),
                "threepid.medium.email.connectors.smtp.caFile",
            )?)),
        };
        let hello = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_else(|| "localhost".into());
        Ok(Smtp {
            cfg: cfg.clone(),
            tls,
            from: from.to_owned(),
            hello,
            idle: Mutex::default(),
        })
    }

    /// A kept connection, or a new one.
    fn session(&self) -> Result<(Session, bool), String> {
        let mut idle = crate::lock(&self.idle);
        while let Some((since, session)) = idle.pop() {
            if since.elapsed() < IDLE_FOR {
                return Ok((session, true));
            }
        }
        drop(idle);
        Session::open(self).map(|s| (s, false))
    }

    fn keep(&self, session: Session) {
        let mut idle = crate::lock(&self.idle);
        if idle.len() < IDLE_MAX {
            idle.push((Instant::now(), session));
        }
    }
}

impl Connector for Smtp {
    fn send(&self, to: &str, message: &str) -> Result<(), NotifyError> {
        if to.contains(['\r', '\n', '<', '>', ' ']) {
            return Err(NotifyError::Send(format!(
                "recipient '{to}' is not an address"
            )));
        }
        let fail = |why: String| NotifyError::Send(format!("SMTP {}: {why}", self.cfg.host));
        let (mut session, reused) = self.session().map_err(fail)?;
        match session.send(&self.from, to, message, self.cfg.timeout) {
            Ok(()) => {
                self.keep(session);
                Ok(())
            }
            // A kept connection the server closed meanwhile: nothing was accepted, so
            // once more on a new one.
            Err(Failure::BeforeData(_)) if reused => {
                let mut fresh = Session::open(self).map_err(fail)?;
                fresh
                    .send(&self.from, to, message, self.cfg.timeout)
                    .map_err(|e| refused_or_failed(&self.cfg.host, e))?;
                self.keep(fresh);
                Ok(())
            }
            Err(e) => Err(refused_or_failed(&self.cfg.host, e)),
        }
    }

    /// A kept connection, then a new one: each opening, and each message, under one
    /// `timeout`.
    fn longest_send(&self) -> Duration {
        self.cfg.timeout * 4
    }
}

/// One mapping for every attempt: a refusal for good stays one on a fresh connection.
fn refused_or_failed(host: &str, e: Failure) -> NotifyError {
    match e {
        Failure::Refused(why) => NotifyError::Refused(format!("SMTP {host}: {why}")),
        e => NotifyError::Send(format!("SMTP {host}: {}", e.why())),
    }
}

/// Why a send failed: before the message was handed over (safe to try again), or after;
/// or the server refused the recipient or the message for good (a 5xx to RCPT, DATA or
/// the end of data but those [`for_good`] leaves to a retry: the same message would be
/// refused again).
enum Failure {
    BeforeData(String),
    AfterData(String),
    Refused(String),
}

impl Failure {
    fn why(self) -> String {
        match self {
            Failure::BeforeData(w) | Failure::AfterData(w) | Failure::Refused(w) => w,
        }
    }
}

/// The socket, each read and write of which waits at most until `deadline`: a server
/// trickling bytes (of a greeting, a TLS handshake, a reply) cannot stretch an exchange
/// past it, however many reads it takes.
struct Timed {
    tcp: TcpStream,
    deadline: Instant,
}

impl Timed {
    fn arm(&self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, TOO_SLOW));
        }
        self.tcp.set_read_timeout(Some(left))?;
        self.tcp.set_write_timeout(Some(left))
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.tcp.read(buf).map_err(named)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        self.tcp.write(buf).map_err(named)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// A socket timeout says so (the OS says "resource temporarily unavailable").
fn named(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, TOO_SLOW)
        }
        _ => e,
    }
}

enum Stream {
    Plain(Timed),
    Tls(Box<StreamOwned<ClientConnection, Timed>>),
}

impl Stream {
    /// When the exchange that starts now must be over.
    fn set_deadline(&mut self, deadline: Instant) {
        match self {
            Stream::Plain(s) => s.deadline = deadline,
            Stream::Tls(s) => s.sock.deadline = deadline,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// One open, greeted (and maybe authenticated) connection. Each exchange (opening, then
/// each message) must be over within `timeout` (`Timed`), so that a slow server cannot
/// hold a worker longer.
struct Session {
    stream: BufReader<Stream>,
    pipelining: bool,
    eight_bit: bool,
}

/// Why an expected reply did not come: another reply (the connection is still in step), or
/// the connection failed.
enum Refusal {
    /// Another reply: its code, its enhanced status code (RFC 3463) if it gave one, and
    /// what the log says.
    Reply {
        code: u16,
        enhanced: Option<String>,
        why: String,
    },
    Io(String),
}

impl From<Refusal> for String {
    fn from(r: Refusal) -> String {
        match r {
            Refusal::Reply { why, .. } | Refusal::Io(why) => why,
        }
    }
}

impl Refusal {
    /// A refusal of `what` as a failure: for good if [`for_good`], else `otherwise`.
    fn failure(self, what: &str, otherwise: fn(String) -> Failure) -> Failure {
        match self {
            Refusal::Reply {
                code,
                enhanced,
                why,
            } if for_good(what, code, enhanced.as_deref()) => Failure::Refused(why),
            r => otherwise(r.into()),
        }
    }
}

/// Whether a reply `code` (with its `enhanced` status) to `what` refuses the recipient or
/// the message for good: a 5xx to RCPT, DATA or the end of data, except what an operator
/// or time cures, which stays worth a retry:
/// - 530, authentication required: the relay wants a login the config does not give;
/// - a 5.7.x to RCPT (relaying denied, a policy): the relay's config, which its operator
///   fixes, not the address;
/// - 552 to RCPT: RFC 5321 4.5.3.1.10, an old server's "too many recipients", to be taken
///   as 452.
fn for_good(what: &str, code: u16, enhanced: Option<&str>) -> bool {
    if !(500..=599).contains(&code) || !matches!(what, "RCPT" | "DATA" | "end of data") {
        return false;
    }
    let policy = enhanced.is_some_and(|e| e.starts_with("5.7."));
    !(code == 530 || (what == "RCPT" && (code == 552 || policy)))
}

/// The enhanced status code (RFC 3463 `class.subject.detail`) a reply's text starts with.
fn enhanced_code(text: &str) -> Option<String> {
    let word = text.split_whitespace().next()?;
    let parts: Vec<&str> = word.split('.').collect();
    let numeric = |p: &&str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    (parts.len() == 3 && matches!(parts[0], "2" | "4" | "5") && parts.iter().all(numeric))
        .then(|| word.to_owned())
}

/// A reply: its code and text (lines joined).
struct Reply {
    code: u16,
    text: String,
}

impl Session {
    fn open(smtp: &Smtp) -> Result<Session, String> {
        let cfg = &smtp.cfg;
        // One deadline for the whole opening: resolving, connecting (to each address in
        // turn), the greeting, TLS, EHLO and the login.
        let deadline = Instant::now() + cfg.timeout;
        let left = || {
            let left = deadline.saturating_duration_since(Instant::now());
            (!left.is_zero())
                .then_some(left)
                .ok_or_else(|| TOO_SLOW.to_owned())
        };
        let addrs = resolve(&cfg.host, cfg.port, left()?)?;
        let mut last = "no address".to_owned();
        let mut tcp = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, left()?) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = format!("connecting to {a}: {e}"),
            }
        }
        let tcp = tcp.ok_or(last)?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let timed = Timed { tcp, deadline };
        let stream = match cfg.tls {
            SmtpTls::Implicit => smtp.wrap_tls(timed)?,
            _ => Stream::Plain(timed),
        };
        let mut session = Session {
            stream: BufReader::new(stream),
            pipelining: false,
            eight_bit: false,
        };
        session.expect(220, "greeting").map_err(String::from)?;
        let mut extensions = session.ehlo(&smtp.hello)?;
        let offers_tls = extensions.iter().any(|e| e == "STARTTLS");
        let upgrade = match cfg.tls {
            SmtpTls::Opportunistic => offers_tls,
            SmtpTls::Required if !offers_tls => {
                return Err("the server does not offer STARTTLS (tls: 2 requires it)".into())
            }
            SmtpTls::Required => true,
            SmtpTls::None | SmtpTls::Implicit => false,
        };
        if upgrade {
            session.command("STARTTLS\r\n", 220, "STARTTLS")?;
            let Stream::Plain(timed) = session.stream.into_inner() else {
                return Err("STARTTLS on an encrypted connection".into());
            };
            session.stream = BufReader::new(smtp.wrap_tls(timed)?);
            extensions = session.ehlo(&smtp.hello)?;
        }
        session.pipelining = extensions.iter().any(|e| e == "PIPELINING");
        session.eight_bit = extensions.iter().any(|e| e == "8BITMIME");
        let encrypted = matches!(session.stream.get_ref(), Stream::Tls(_));
        if let Some(login) = &cfg.login {
            // A password never goes in clear unless the operator chose no TLS at all
            // (`tls: 1` with a server that does not offer STARTTLS, or a stripped offer).
            if !encrypted && cfg.tls != SmtpTls::None {
                return Err(
                    "the server offered no STARTTLS: not sending the login in clear (tls: 0 allows it)"
                        .into(),
                );
            }
            let secret = format!("\0{login}\0{}", cfg.password.as_deref().unwrap_or_default());
            let auth = format!("AUTH PLAIN {}\r\n", b64::encode_padded(secret.as_bytes()));
            session.command(&auth, 235, "AUTH")?;
        }
        Ok(session)
    }

    /// EHLO; the extensions offered, upper case, without parameters.
    fn ehlo(&mut self, hello: &str) -> Result<Vec<String>, String> {
        let reply = self.command(&format!("EHLO {hello}\r\n"), 250, "EHLO")?;
        Ok(reply
            .text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(|e| e.to_ascii_uppercase())
            .collect())
    }

    fn send(
        &mut self,
        from: &str,
        to: &str,
        message: &str,
        timeout: Duration,
    ) -> Result<(), Failure> {
        self.stream.get_mut().set_deadline(Instant::now() + timeout);
        let before = Failure::BeforeData;
        let body = if !message.is_ascii() && self.eight_bit {
            " BODY=8BITMIME"
        } else {
            ""
        };
        let envelope = [
            (format!("MAIL FROM:<{from}>{body}\r\n"), 250, "MAIL"),
            (format!("RCPT TO:<{to}>\r\n"), 250, "RCPT"),
            ("DATA\r\n".to_owned(), 354, "DATA"),
        ];
        if self.pipelining {
            let all: String = envelope.iter().map(|(c, _, _)| c.as_str()).collect();
            self.write(&all).map_err(before)?;
            // Every reply is read, so that the connection stays in step even after a
            // refusal; the first refusal is the one reported.
            let mut refused = None;
            for (_, code, what) in &envelope {
                match self.expect(*code, what) {
                    Ok(_) => {}
                    // A refusal: the other replies still come.
                    Err(r @ Refusal::Reply { .. }) => {
                        refused.get_or_insert(r.failure(what, before));
                    }
                    // The connection failed: nothing more will come.
                    Err(Refusal::Io(e)) => return Err(before(e)),
                }
            }
            if let Some(e) = refused {
                return Err(e);
            }
        } else {
            for (command, code, what) in &envelope {
                self.write(command).map_err(before)?;
                self.expect(*code, what)
                    .map_err(|r| r.failure(what, before))?;
            }
        }
        let mut data = dot_stuffed(message);
        data.push_str(".\r\n");
        self.write(&data).map_err(Failure::AfterData)?;
        self.expect(250, "end of data")
            .map_err(|r| r.failure("end of data", Failure::AfterData))?;
        Ok(())
    }

    fn command(&mut self, command: &str, code: u16, what: &str) -> Result<Reply, String> {
        self.write(command)?;
        self.expect(code, what).map_err(String::from)
    }

    fn write(&mut self, text: &str) -> Result<(), String> {
        let stream = self.stream.get_mut();
        stream
            .write_all(text.as_bytes())
            .and_then(|()| stream.flush())
            .map_err(|e| format!("writing: {e}"))
    }

    /// Reads a reply; a refusal unless its code is `code`.
    fn expect(&mut self, code: u16, what: &str) -> Result<Reply, Refusal> {
        let reply = self
            .reply()
            .map_err(|e| Refusal::Io(format!("{what}: {e}")))?;
        if reply.code == code {
            Ok(reply)
        } else {
            let first = reply.text.lines().next().unwrap_or_default();
            Err(Refusal::Reply {
                code: reply.code,
                enhanced: enhanced_code(first),
                why: format!("{what}: the server answered {} {first}", reply.code),
            })
        }
    }

    fn reply(&mut self) -> Result<Reply, String> {
        let mut text = String::new();
        for _ in 0..LINES_MAX {
            let mut line = Vec::new();
            let read = (&mut self.stream)
                .take(LINE_MAX as u64)
                .read_until(b'\n', &mut line)
                .map_err(|e| format!("reading: {e}"))?;
            if read == 0 {
                return Err("the server closed the connection".into());
            }
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end();
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| format!("not an SMTP reply: {line:?}"))?;
            text.push_str(line.get(4..).unwrap_or_default());
            text.push('\n');
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(Reply { code, text });
            }
        }
        Err("a reply of too many lines".into())
    }
}

impl Smtp {
    fn wrap_tls(&self, tcp: Timed) -> Result<Stream, String> {
        let config = self
            .tls
            .clone()
            .ok_or("TLS asked for without a TLS configuration")?;
        let name = ServerName::try_from(self.cfg.host.clone())
            .map_err(|e| format!("'{}' as a TLS name: {e}", self.cfg.host))?;
        let conn = ClientConnection::new(config, name).map_err(|e| format!("TLS: {e}"))?;
        let mut stream = StreamOwned::new(conn, tcp);
        // The handshake now, so that a certificate we refuse fails here, named.
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| format!("TLS handshake: {e}"))?;
        }
        Ok(Stream::Tls(Box::new(stream)))
    }
}

/// `host:port`'s addresses, within `timeout`: the system resolver has no timeout to give,
/// so it runs on a helper thread, abandoned if it takes longer.
fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<std::net::SocketAddr>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![(ip, port).into()]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("smtp-resolve".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(|a| a.collect()));
        })
        .map_err(|e| format!("no thread to resolve {host}: {e}"))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(format!("resolving {host}: {e}")),
        Err(_) => Err(format!("resolving {host}: no answer in time")),
    }
}

/// The message as DATA carries it: CRLF line ends, a line starting with `.` doubled, ending
/// with CRLF (the caller adds the final `.` line).
fn dot_stuffed(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 64);
    for line in message.split_inclusive('\n') {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

impl Smtp {
    /// `check-config --connect`: opens a session as a send does (connect, greeting, EHLO,
    /// STARTTLS and AUTH as configured, within the connector's timeout), then QUIT; no
    /// mail is sent. What was done, or what failed and why.
    pub fn check(&self) -> Result<String, String> {
        let mut session = Session::open(self)?;
        let encrypted = matches!(session.stream.get_ref(), Stream::Tls(_));
        let _ = session.command("QUIT\r\n", 221, "QUIT");
        let mut done = vec!["EHLO"];
        if encrypted {
            done.push(if self.cfg.tls == SmtpTls::Implicit {
                "TLS (implicit)"
            } else {
                "STARTTLS"
            });
        }
        let login = match &self.cfg.login {
            Some(login) => format!("AUTH as {login}"),
            None => "no AUTH (no login configured)".into(),
        };
        done.push(&login);
        Ok(done.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::{dot_stuffed, enhanced_code, for_good};

    #[test]
    fn only_refusals_no_operator_can_cure_are_for_good() {
        assert!(for_good("RCPT", 550, Some("5.1.1")));
        assert!(for_good("DATA", 554, None));
        assert!(for_good("end of data", 554, Some("5.7.1")));
        assert!(!for_good("RCPT", 450, Some("4.2.0")));
        assert!(!for_good("MAIL", 550, None));
        assert!(!for_good("RCPT", 530, Some("5.7.0")));
        assert!(!for_good("end of data", 530, None));
        assert!(!for_good("RCPT", 550, Some("5.7.1")));
        assert!(!for_good("RCPT", 552, None));
        assert!(for_good("end of data", 552, Some("5.3.4")));
    }

    #[test]
    fn enhanced_codes_are_read_only_where_they_are() {
        assert_eq!(
            enhanced_code("5.7.1 relaying denied").as_deref(),
            Some("5.7.1")
        );
        assert_eq!(enhanced_code("no such user 5.1.1"), None);
        assert_eq!(enhanced_code("5.7 denied"), None);
        assert_eq!(enhanced_code(""), None);
    }

    #[test]
    fn data_is_dot_stuffed_with_crlf() {
        assert_eq!(dot_stuffed("a\n.b\r\n..c"), "a\r\n..b\r\n...c\r\n");
        assert_eq!(dot_stuffed("x\r\n"), "x\r\n");
    }
}
