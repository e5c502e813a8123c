//! `tests/fakes/homeserver.py`: a homeserver's federation API over TLS (the test CA's
//! certificate), for the faults and delegations Synapse cannot produce on demand.

use super::services;
use std::io::{BufRead, BufReader};
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
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fakes/homeserver.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--bind", bind, "--port", &port.to_string()])
            .args([
                "--cert",
                &format!("{tls}/server.pem"),
                "--key",
                &format!("{tls}/server.key"),
            ])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the fake homeserver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("fake homeserver did not start on {bind}:{port}: {line:?}"));
        FakeHomeserver { child, port }
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
