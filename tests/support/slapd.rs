//! A slapd of a test's own (tests/services/ldap/start.sh) with a few fixture users, for
//! tests that stop it or add entries without disturbing the shared one.

use super::services::get;
use super::TempDir;
use std::io::Write;
use std::process::{Command, Stdio};

/// A slapd of a test's own (to stop and restart it), with a few fixture users; stopped when
/// dropped, so a failing test leaves no server behind on its port.
pub struct OwnSlapd {
    dir: std::path::PathBuf,
    pub port: &'static str,
}

impl OwnSlapd {
    pub fn start(dir: &TempDir, port: &'static str) -> OwnSlapd {
        let slapd = OwnSlapd {
            dir: dir.join("ldap"),
            port,
        };
        slapd.run(false);
        slapd
    }

    fn run(&self, keep_data: bool) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/services/ldap/start.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(script).arg(&self.dir).arg(self.port).arg("10");
        if keep_data {
            cmd.arg("--keep");
        }
        assert!(
            cmd.status().unwrap().success(),
            "slapd on port {}",
            self.port
        );
    }

    pub fn restart(&self) {
        self.run(true);
    }

    /// Adds entries (LDIF) as the directory's admin.
    pub fn add(&self, ldif: &str) {
        let mut child = Command::new("ldapadd")
            .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", self.port)])
            .args(["-D", get("LDAP_ADMIN_DN"), "-w", get("LDAP_ADMIN_PASSWORD")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "ldapadd:\n{ldif}");
    }

    pub fn stop(&self) {
        let Ok(pid) = std::fs::read_to_string(self.dir.join("slapd.pid")) else {
            return;
        };
        let _ = Command::new("kill").arg(pid.trim()).status();
        for _ in 0..100 {
            if !self.dir.join("slapd.pid").exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for OwnSlapd {
    fn drop(&mut self) {
        self.stop();
    }
}
