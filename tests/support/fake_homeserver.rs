//! `tests/fakes/homeserver.py`: a homeserver's federation API over TLS (the test CA's
//! certificate), for the faults and delegations Synapse cannot produce on demand.

use super::services;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

pub struct FakeHomeserver {
    child: Child,
    pub port: u16,
}

impl FakeHomeserver {
    /// Starts it on `bind:port` (port 0: any) with extra flags (`--well-known`, `--redirect`).
    pub fn start(bind: &str, port: u16, flags: &[&str]) -> FakeHomeserver {
        services::ensure_up();
        let tls = format!("{}/tls", services::get("MXISD_TEST_DIR"));
        let mut args: Vec<String> = vec![
            "--bind".into(),
            bind.into(),
            "--port".into(),
            port.to_string(),
        ];
        args.extend([
            "--cert".into(),
            format!("{tls}/server.pem"),
            "--key".into(),
            format!("{tls}/server.key"),
        ]);
        args.extend(flags.iter().map(|f| f.to_string()));
        let (child, port) = spawn_fake("homeserver.py", &args);
        FakeHomeserver { child, port }
    }
}

/// Starts `tests/fakes/<script>` with `args` and waits for its "listening <port>" line; if
/// none comes, the panic shows what the fake wrote to stderr (a port taken, a traceback).
pub fn spawn_fake(script: &str, args: &[String]) -> (Child, u16) {
    let path = format!("{}/tests/fakes/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("/usr/bin/python3")
        .arg(&path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {script}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let Some(port) = line
        .strip_prefix("listening ")
        .and_then(|p| p.trim().parse().ok())
    else {
        let _ = child.kill();
        let mut said = String::new();
        let _ = stderr.read_to_string(&mut said);
        panic!("{script} {args:?} did not start: {line:?}\n{said}");
    };
    // Drained, so a fake that logs each request never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (child, port)
}

/// `tests/fakes/rest_backend.py`: mxisd's REST store wire format.
pub struct FakeRestBackend {
    child: Child,
    pub port: u16,
}

impl FakeRestBackend {
    pub fn start(broken: bool) -> FakeRestBackend {
        let args: Vec<String> = if broken {
            vec!["--broken".into()]
        } else {
            vec![]
        };
        let (child, port) = spawn_fake("rest_backend.py", &args);
        FakeRestBackend { child, port }
    }
}

impl Drop for FakeRestBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/fakes/twilio.py`: Twilio's Messages API (account `ACtest`, token
/// `secret-token`); `fail_to` numbers are refused as Twilio refuses a bad number.
pub struct FakeTwilio {
    child: Child,
    pub port: u16,
}

impl FakeTwilio {
    pub fn start(fail_to: &[&str]) -> FakeTwilio {
        let args: Vec<String> = fail_to
            .iter()
            .flat_map(|n| ["--fail-to".to_owned(), n.to_string()])
            .collect();
        let (child, port) = spawn_fake("twilio.py", &args);
        FakeTwilio { child, port }
    }

    /// A fake that answers its `n`th message only once `release` is called (it lists it
    /// at once): a send still under way.
    pub fn start_holding(n: usize) -> FakeTwilio {
        let (child, port) = spawn_fake("twilio.py", &["--hold-nth".to_owned(), n.to_string()]);
        FakeTwilio { child, port }
    }

    /// Lets the held message be answered.
    pub fn release(&self) {
        ureq::get(&format!("http://127.0.0.1:{}/release", self.port))
            .call()
            .unwrap();
    }

    /// The `threepid.medium.msisdn` section sending through this fake.
    pub fn config(&self) -> String {
        format!(
            "    msisdn:\n      connectors:\n        twilio:\n          accountSid: ACtest\n          authToken: secret-token\n          number: '+15550001111'\n          baseUrl: 'http://127.0.0.1:{}'\n",
            self.port
        )
    }

    /// The code of the `n`th message the fake accepted (the digits of its body).
    pub fn code(&self, n: usize) -> String {
        self.messages()[n]
            .2
            .chars()
            .filter(char::is_ascii_digit)
            .collect()
    }

    /// Every message the fake accepted: (To, From, Body).
    pub fn messages(&self) -> Vec<(String, String, String)> {
        let text = ureq::get(&format!("http://127.0.0.1:{}/messages", self.port))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let list: serde_json::Value = serde_json::from_str(&text).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let f = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
                (f("To"), f("From"), f("Body"))
            })
            .collect()
    }
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FakeHomeserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `federation` section pointing mxisd at the test DNS and CA, plus `extra` lines.
pub fn federation_config(extra: &str) -> String {
    format!(
        "federation:\n  resolver: '127.0.0.1:{}'\n  connectTimeout: 2\n  timeout: 3\n  tls:\n    caFile: '{}/tls/ca.pem'\n{extra}",
        services::get("DNS_PORT"),
        services::get("MXISD_TEST_DIR")
    )
}

/// A v2 access token for `@<localpart>:127.0.0.1:<port>`, registered through `hs`. The
/// server must trust loopback (`ipRangeWhitelist`) and the test CA.
pub fn v2_token(server: &super::Mxisd, hs: &FakeHomeserver, localpart: &str) -> String {
    let name = format!("127.0.0.1:{}", hs.port);
    let body = serde_json::json!({
        "access_token": format!("user:@{localpart}:{name}"),
        "token_type": "Bearer",
        "matrix_server_name": name,
        "expires_in": 3600,
    });
    let r = server.post("/_matrix/identity/v2/account/register", &body.to_string());
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["token"].as_str().unwrap().to_owned()
}
