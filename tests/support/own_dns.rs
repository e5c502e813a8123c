//! A dnsmasq of a test's own, on a free port, serving this checkout's
//! `tests/services/dnsmasq.conf` (the shared one may have been started from another
//! checkout, without the records a test adds). Stopped when dropped.

use super::free_port;
use super::TempDir;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct OwnDns {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl OwnDns {
    pub fn start() -> OwnDns {
        let dir = TempDir::new();
        let port = free_port();
        let conf =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/services/dnsmasq.conf");
        let mut command = Command::new("/usr/sbin/dnsmasq");
        command
            .process_group(0)
            .arg(format!("--conf-file={}", conf.display()))
            .args([
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--keep-in-foreground",
            ])
            .args(["--listen-address=127.0.0.1", "--bind-interfaces"])
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if unsafe { libc::geteuid() } == 0 {
            command.arg("--user=root");
        }
        let child = command.spawn().expect("run dnsmasq");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        OwnDns {
            port,
            child,
            _dir: dir,
        }
    }
}

impl Drop for OwnDns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
