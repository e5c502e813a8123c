//! A PostgreSQL cluster of a test's own, for tests that stop the server or need TLS: the
//! shared test server (`tests/services/`) must stay up for every other test.

use super::{free_port, services};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgCluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    options: String,
}

fn as_postgres(program: &Path) -> Command {
    // initdb and the server refuse to run as root.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgCluster {
    /// A new cluster (trust authentication, database `mxisd`) on a free port; with `tls`,
    /// serving the test CA's server certificate (`localhost`, `127.0.0.1`).
    pub fn start(tls: bool) -> PgCluster {
        services::ensure_up(); // the test CA (PostgreSQL is installed by up.sh)
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL installed")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .max()
            .expect("a PostgreSQL version");
        let port = free_port();
        let dir = Path::new(services::get("MXISD_TEST_DIR"))
            .join(format!("pg-own-{}{port}", super::run_marker()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off",
            dir.display()
        );
        if tls {
            let ca = Path::new(services::get("MXISD_TEST_DIR")).join("tls");
            std::fs::copy(ca.join("server.pem"), dir.join("server.pem")).unwrap();
            std::fs::copy(ca.join("server.key"), dir.join("server.key")).unwrap();
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={0}/server.pem -c ssl_key_file={0}/server.key",
                dir.display()
            ));
        }
        if unsafe { libc::geteuid() } == 0 {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"]).arg(&dir);
                    c
                },
                "chown",
            );
        }
        use std::os::unix::fs::PermissionsExt;
        if tls {
            std::fs::set_permissions(
                dir.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb.arg("-D").arg(dir.join("data")).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        run(initdb, "initdb");
        let cluster = PgCluster {
            port,
            dir,
            bin,
            options,
        };
        cluster.start_again();
        let mut createdb = as_postgres(&cluster.bin.join("createdb"));
        createdb.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "mxisd",
        ]);
        run(createdb, "createdb");
        cluster
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_again(&self) {
        let mut start = as_postgres(&self.bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "30", "-o", &self.options, "start"]);
        run(start, "pg_ctl start");
    }

    /// Stops the server at once (clients see their connections drop).
    pub fn stop(&self) {
        let mut stop = as_postgres(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        run(stop, "pg_ctl stop");
    }

    /// A `key=value` connection string to database `mxisd`.
    pub fn connection(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=mxisd",
            self.port
        )
    }

    /// Runs `sql` on database `mxisd` with psql.
    pub fn psql(&self, sql: &str) -> String {
        super::services::psql_on(&self.port.to_string(), "postgres", "mxisd", sql)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let mut stop = as_postgres(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"]);
        let _ = stop.output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
