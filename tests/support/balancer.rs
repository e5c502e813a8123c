//! Debian's nginx as a round-robin load balancer in front of several mxisd instances,
//! configured by the example the README gives (`etc/nginx/mxisd-instances.conf`).

use super::free_port;
use super::TempDir;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Balancer {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Balancer {
    /// nginx on a free loopback port, passing requests in turn to `upstreams`.
    pub fn start(upstreams: &[SocketAddr]) -> Balancer {
        Balancer::start_on(free_port(), upstreams, false)
    }

    /// The same on `port`, over TLS with the test CA's certificate (`localhost`) when `tls`:
    /// how a homeserver reaches an identity server.
    pub fn start_on(port: u16, upstreams: &[SocketAddr], tls: bool) -> Balancer {
        Balancer::start_at("127.0.0.1", port, upstreams, tls)
    }

    /// The same on `ip:port` (another loopback address, such as 127.0.0.6:443 for a name's
    /// default HTTPS port).
    pub fn start_at(ip: &str, port: u16, upstreams: &[SocketAddr], tls: bool) -> Balancer {
        super::services::ensure_up(); // the test CA (nginx is installed by up.sh)
        let example = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/nginx/mxisd-instances.conf"),
        )
        .unwrap();
        let servers: String = upstreams
            .iter()
            .map(|a| format!("    server {a};\n"))
            .collect();
        let site = example
            .replace(
                "    server 127.0.0.1:8091;\n    server 127.0.0.1:8092;\n",
                &servers,
            )
            .replace("listen 127.0.0.1:8090;", &format!("listen {ip}:{port};"));
        assert!(
            site.contains(&servers) && site.contains(&port.to_string()),
            "the example changed: {site}"
        );
        let site = if tls {
            let certs = format!("{}/tls", super::services::get("MXISD_TEST_DIR"));
            site.replace(
                &format!("listen {ip}:{port};"),
                &format!("listen {ip}:{port} ssl;\n    ssl_certificate {certs}/server.pem;\n    ssl_certificate_key {certs}/server.key;"),
            )
        } else {
            site
        };
        Balancer::serve(ip, port, &site)
    }

    /// nginx serving `site` (what goes in its `http` block), which listens on `ip:port`.
    pub fn serve(ip: &str, port: u16, site: &str) -> Balancer {
        let dir = TempDir::new();
        std::fs::write(dir.join("mxisd-instances.conf"), site).unwrap();
        let d = dir.path().display();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  include {d}/mxisd-instances.conf;\n}}\n"
            ),
        )
        .unwrap();
        let nginx = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nginx");
        // In a process group of its own: the master and its workers, stopped together.
        let child = Command::new(nginx)
            .process_group(0)
            .args([
                "-p",
                &d.to_string(),
                "-c",
                &format!("{d}/nginx.conf"),
                "-g",
                "daemon off;",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((ip, port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Balancer {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Balancer {
    /// A graceful stop (SIGQUIT: the workers finish and exit, then the master), waited for
    /// until no process of the group is left; after 10 s the whole group is killed. Killing
    /// only the master left its workers running, holding the port.
    fn drop(&mut self) {
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory preconditions; the group is nginx's own.
        unsafe { libc::kill(group, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let _ = self.child.try_wait(); // reaps the master: a zombie still counts
                                           // SAFETY: as above; signal 0 only asks whether any process of the group lives.
            if unsafe { libc::kill(-group, 0) } != 0 {
                break;
            }
            if Instant::now() > deadline {
                unsafe { libc::kill(-group, libc::SIGKILL) };
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
