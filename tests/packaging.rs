//! The Debian package (`[package.metadata.deb]` in Cargo.toml, `debian/`): every file it
//! names is in the checkout; the Synapse module it installs loads in Synapse; the unit is
//! hardened; lintian finds nothing; and, in a throwaway Debian root, it replaces mxisd
//! 1.4.6's Java package unattended, keeping the configuration and the signing keys, enables
//! the service again, and its purge keeps the keys.

use crate::support::{services, TempDir};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The source paths of the package's assets (but the binary, which `cargo deb` builds).
fn asset_sources() -> Vec<String> {
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    let assets = manifest
        .split("assets = [")
        .nth(1)
        .and_then(|rest| rest.split("\n]").next())
        .expect("[package.metadata.deb] assets");
    assets
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[\"")?.split('"').next())
        .filter(|source| !source.starts_with("target/"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_packaged_file_is_in_the_checkout() {
    let sources = asset_sources();
    assert!(
        sources.contains(&"etc/synapse/mxisd_password_auth.py".to_owned()),
        "{sources:?}"
    );
    for source in sources {
        let dir = Path::new(ROOT).join(source.trim_end_matches("/*"));
        assert!(dir.exists(), "{source} is packaged but missing");
    }
}

/// The module loads as Synapse loads it, under Synapse's own Python with its module API
/// (`tests/services/synapse/check_module.py`): a wrong import, a ModuleApi method Synapse
/// does not have, or a callback registered with the wrong arguments fails here.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_synapse_module_loads_in_synapse() {
    crate::support::services::ensure_up();
    let python = Path::new(crate::support::services::get("SYNAPSE_VENV")).join("bin/python");
    assert!(
        python.is_file(),
        "no Synapse venv at {}: run bash tests/services/up.sh",
        python.display()
    );
    let out = Command::new(python)
        .arg(Path::new(ROOT).join("tests/services/synapse/check_module.py"))
        .env("PYTHONPATH", Path::new(ROOT).join("etc/synapse"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What it checked against Synapse: the module's calls, found in its source.
    for used in [
        "ModuleApi.register_user",
        "ModuleApi.check_user_exists",
        "SimpleHttpClient.post_json_get_json",
    ] {
        assert!(stdout.contains(used), "{used} not checked: {stdout}");
    }
}

/// mxisd's signing key in `tests/data/mxisd-keystore`, as the installed binary serves it.
const KEYSTORE_PUBLIC_KEY: &str = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI";

/// Runs `cmd`; its standard output. A failure fails the test with both outputs.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{stdout}{stderr}",
        out.status
    );
    stdout + &stderr
}

/// The package as `sh debian/build.sh` builds it (README, "Debian package"), but around the
/// debug binary, once per test binary: its path.
fn package() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        services::ensure_up();
        let started = Instant::now();
        // In the environment of a shell: the CARGO_PKG_* variables that cargo test sets would
        // reach the build scripts of dependencies (ring's asks for CARGO_PKG_VERSION_MAJOR),
        // and a build with them rebuilds everything, as does the next one without them.
        let mut build = Command::new("sh");
        // The debug binary the tests already built, packed with less compression: a release
        // build (fat LTO) would add minutes to the suite for a package that differs only there.
        build
            .args(["debian/build.sh", "--fast"])
            .current_dir(ROOT)
            .env_clear()
            .env("MXISD_PACKAGE_PROFILE", "dev");
        for keep in [
            "PATH",
            "HOME",
            "CARGO_HOME",
            "RUSTUP_HOME",
            "MXISD_TEST_RUN",
        ] {
            if let Some(value) = std::env::var_os(keep) {
                build.env(keep, value);
            }
        }
        run_ok(&mut build);
        println!("package built in {:?}", started.elapsed());
        let arch = run_ok(Command::new("dpkg").arg("--print-architecture"));
        let deb = Path::new(ROOT).join(format!(
            "target/debian/mxisd_{}-1_{}.deb",
            env!("CARGO_PKG_VERSION"),
            arch.trim()
        ));
        assert!(deb.is_file(), "{} not built", deb.display());
        deb
    })
}

/// A copy of the Debian root that `tests/support/debian-root.sh` made (debootstrap of this
/// machine's release), removed when dropped. Commands run in it by chroot, with stdin
/// closed, as an unattended upgrade runs them.
struct Chroot {
    dir: TempDir,
}

impl Chroot {
    fn new() -> Chroot {
        let release = std::fs::read_to_string("/etc/os-release").unwrap();
        let codename = release
            .lines()
            .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
            .expect("VERSION_CODENAME in /etc/os-release");
        let cached = Path::new(services::get("PACKAGING_CACHE"))
            .join(format!("debian-root-{}", codename.trim_matches('"')));
        assert!(
            cached.join("usr/bin/apt-get").is_file(),
            "no Debian root at {}: run bash tests/services/up.sh as root",
            cached.display()
        );
        let dir = TempDir::new();
        run_ok(
            Command::new("cp")
                .args(["-a", "--reflink=auto"])
                .arg(&cached)
                .arg(dir.join("root")),
        );
        Chroot { dir }
    }

    fn path(&self, inside: &str) -> PathBuf {
        self.dir.join("root").join(inside.trim_start_matches('/'))
    }

    /// Runs `script` with sh in the root; its output (stdout then stderr).
    /// SYSTEMD_OFFLINE: systemctl in a chroot acts on unit files only; it finds out by itself
    /// by comparing its root with PID 1's, which this test machine may not let it read.
    fn sh(&self, script: &str) -> String {
        run_ok(
            Command::new("/usr/sbin/chroot")
                .arg(self.path("/"))
                .args(["sh", "-c", script])
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("SYSTEMD_OFFLINE", "1")
                .envs(std::env::var("MXISD_TEST_RUN").map(|m| ("MXISD_TEST_RUN", m))),
        )
    }

    /// `systemctl is-enabled` of the unit as the root's files say (host's systemctl --root).
    fn is_enabled(&self, unit: &str) -> String {
        let out = Command::new("systemctl")
            .arg(format!("--root={}", self.path("/").display()))
            .args(["is-enabled", unit])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn read(&self, inside: &str) -> String {
        std::fs::read_to_string(self.path(inside))
            .unwrap_or_else(|e| panic!("{inside} in the root: {e}"))
    }

    fn write(&self, inside: &str, text: &str) {
        let path = self.path(inside);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// The stand-in for mxisd 1.4.6's Java package (`tests/support/java-mxisd-1.4.6/`: its
/// maintainer scripts behave as 1.4.6's did), built with dpkg-deb into the root's /tmp.
fn java_package(root: &Chroot) -> &'static str {
    let build = TempDir::new();
    let tree = build.join("tree");
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(Path::new(ROOT).join("tests/support/java-mxisd-1.4.6"))
            .arg(&tree),
    );
    // Its data directory, which it shipped empty (git keeps no empty directory).
    std::fs::create_dir_all(tree.join("var/lib/mxisd")).unwrap();
    run_ok(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&tree)
            .arg(root.path("/tmp/mxisd_1.4.6_all.deb")),
    );
    "/tmp/mxisd_1.4.6_all.deb"
}

/// Every file under `dir`, relative path and content, sorted.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                found.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    found.sort();
    found
}

/// mxisd 1.4's database (ORMLite's table of pending invites on SQLite) with one pending
/// e-mail invite, owned as 1.4's service left it once the stand-in's postinst ran.
fn mxisd_store_with_an_invite(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "CREATE TABLE `invite_3pid` (`id` VARCHAR , `token` VARCHAR NOT NULL , \
         `sender` VARCHAR NOT NULL , `medium` VARCHAR NOT NULL , `address` VARCHAR NOT NULL , \
         `roomId` VARCHAR NOT NULL , `properties` VARCHAR , PRIMARY KEY (`id`) );
         INSERT INTO invite_3pid VALUES ('example.orgemailbob@example.org', 'mxisd14token',
             '@alice:example.org', 'email', 'bob@example.org', '!old:example.org', NULL);",
    )
    .unwrap();
}

/// The README's `systemctl start mxisd` and `curl`, as far as a chroot allows: no systemd
/// runs there to start the unit, so its `ExecStartPre=` and `ExecStart=` are run as it runs
/// them (as the mxisd user, in the root), then the README's very `curl` of the public key
/// `ed25519:0`. In a network namespace of the test's own, with only loopback: the README's
/// port 8090 is free there whatever else this machine runs. The answer's public key, and
/// mxisd's log.
fn served_public_key(root: &Chroot) -> (String, String) {
    let ids = root.sh("id -u mxisd; id -g mxisd");
    let ids: Vec<&str> = ids.lines().collect();
    let log = root.dir.join("mxisd.log");
    let script = format!(
        r#"set -e
ip link set lo up
chroot --userspec={uid}:{gid} "$ROOT" /usr/bin/mxisd check-config -c /etc/mxisd/mxisd.yaml >/dev/null
chroot --userspec={uid}:{gid} "$ROOT" /usr/bin/mxisd -c /etc/mxisd/mxisd.yaml >/dev/null 2>"$LOG" </dev/null &
pid=$!
for _ in $(seq 200); do
    if curl -s http://127.0.0.1:8090/_matrix/identity/v2/pubkey/ed25519:0; then
        kill -TERM $pid; wait $pid || true; exit 0
    fi
    kill -0 $pid 2>/dev/null || {{ echo "mxisd exited" >&2; exit 1; }}
    sleep 0.1
done
kill -TERM $pid; echo "mxisd did not answer on 127.0.0.1:8090" >&2; exit 1
"#,
        uid = ids[0],
        gid = ids[1],
    );
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("ROOT", root.path("/"))
        .env("LOG", &log)
        .envs(std::env::var("MXISD_TEST_RUN").map(|m| ("MXISD_TEST_RUN", m)))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (
        json["public_key"].as_str().unwrap_or_default().to_owned(),
        log,
    )
}

/// The issue's operator: mxisd 1.4.6's Java package, the admin's own configuration (key
/// store in /var/opt/mxisd, as mxisd's docs had it), then `apt-get install -y` of this
/// package with no other flag and no terminal. Then the purge.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_package_replaces_mxisd_1_4_unattended_and_its_purge_keeps_the_keys() {
    let deb = package();
    let started = Instant::now();
    let root = Chroot::new();
    let java = java_package(&root);
    let config = format!(
        "# The admin's configuration of mxisd 1.4.6 (its port: 1.4's default, 8090).\n\
         matrix:\n  domain: 'example.org'\n\
         key:\n  path: '/var/opt/mxisd/keys'  # mxisd's docs\n\
         storage:\n  provider:\n    sqlite:\n      database: \"/var/lib/mxisd/store.db\"\n\
         # The test's: nothing leaves the machine.\n\
         invite:\n  resolution:\n    recursive: false\n\
         federation:\n  resolver: '127.0.0.1:{dns}'\n",
        dns = services::get("DNS_PORT")
    );
    root.write("/etc/mxisd/mxisd.yaml", &config);
    let keystore = crate::support::data().join("mxisd-keystore");
    std::fs::create_dir_all(root.path("/var/opt/mxisd")).unwrap();
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(&keystore)
            .arg(root.path("/var/opt/mxisd/keys")),
    );
    mxisd_store_with_an_invite(&root.path("/var/lib/mxisd/store.db"));
    root.sh(&format!("dpkg -i {java}"));
    // The key store as 1.4's service left it: its user's.
    root.sh("chown -R mxisd:mxisd /var/opt/mxisd");
    assert_eq!(root.is_enabled("mxisd.service"), "enabled");

    std::fs::copy(deb, root.path("/tmp").join(deb.file_name().unwrap())).unwrap();
    let name = deb.file_name().unwrap().to_string_lossy();
    let upgrade = root.sh(&format!("cd /tmp && apt-get install -y ./{name}"));
    println!("{upgrade}");
    assert!(!upgrade.contains("Configuration file"), "{upgrade}");
    assert_eq!(
        root.sh("dpkg-query -W -f '${Version} ${Status}' mxisd"),
        "1:0.1.0-1 install ok installed"
    );
    // The admin's files as they were; the Java package's sample and unit replaced.
    assert_eq!(root.read("/etc/mxisd/mxisd.yaml"), config);
    assert_eq!(files(&root.path("/var/opt/mxisd/keys")), files(&keystore));
    assert_eq!(
        root.read("/etc/mxisd/mxisd-sample.yaml"),
        std::fs::read_to_string(Path::new(ROOT).join("debian/mxisd-sample.yaml")).unwrap()
    );
    assert!(!root.path("/etc/systemd/system/mxisd.service").exists());
    // The service enabled again, as 1.4's postinst left it ("running" needs a booted
    // system: the chroot has no systemd running, so only the unit files are checked).
    assert_eq!(root.is_enabled("mxisd.service"), "enabled");
    // The key store outside /var/lib/mxisd is writable in the sandbox.
    let dropin = root.read("/etc/systemd/system/mxisd.service.d/50-paths-from-config.conf");
    assert!(
        dropin
            .lines()
            .any(|l| l == "ReadWritePaths= -/var/opt/mxisd"),
        "{dropin}"
    );
    // The unit, its drop-in and what they name, as systemd loads them in that root (its man
    // page too: `man` is pointed at the root's pages).
    run_ok(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.path("/").display()))
            .arg("mxisd.service")
            .env("MANPATH", root.path("/usr/share/man")),
    );
    let (public_key, log) = served_public_key(&root);
    assert_eq!(public_key, KEYSTORE_PUBLIC_KEY, "{log}");
    assert!(log.contains("imported 1 pending invites of mxisd"), "{log}");

    let purge = root.sh("apt-get purge -y mxisd");
    println!("{purge}");
    assert_eq!(files(&root.path("/var/opt/mxisd/keys")), files(&keystore));
    assert!(root.path("/var/lib/mxisd/store.db").is_file());
    assert!(purge.contains("mxisd: kept /var/lib/mxisd"), "{purge}");
    assert!(purge.contains("mxisd: kept /var/opt/mxisd"), "{purge}");
    // Not created by the package: the admin's configuration stays too.
    assert_eq!(root.read("/etc/mxisd/mxisd.yaml"), config);
    assert!(!root.path("/etc/mxisd/mxisd-sample.yaml").exists());
    assert!(!root.path("/etc/systemd/system/mxisd.service.d").exists());
    println!("upgrade and purge in {:?}", started.elapsed());
}

/// Installs the package into a fresh root: the root.
fn first_install() -> Chroot {
    let deb = package();
    let root = Chroot::new();
    std::fs::copy(deb, root.path("/tmp").join(deb.file_name().unwrap())).unwrap();
    let name = deb.file_name().unwrap().to_string_lossy();
    root.sh(&format!("cd /tmp && apt-get install -y ./{name}"));
    root
}

/// A first install: the configuration made from the sample (root:mxisd 0640), the state
/// directory (mxisd's, 0700), the service left disabled until matrix.domain is set; then
/// the README's next steps, and a purge that keeps the signing key the start made.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_first_install_configures_from_the_sample_and_starts_as_the_readme_says() {
    let root = first_install();
    assert_eq!(
        root.read("/etc/mxisd/mxisd.yaml"),
        root.read("/etc/mxisd/mxisd-sample.yaml")
    );
    assert_eq!(
        root.sh("stat -c '%U:%G %a' /etc/mxisd/mxisd.yaml /var/lib/mxisd"),
        "root:mxisd 640\nmxisd:mxisd 700\n"
    );
    assert_eq!(root.is_enabled("mxisd.service"), "disabled");
    assert!(!root.path("/etc/systemd/system/mxisd.service.d").exists());
    // The README's next steps: matrix.domain, the check, the service, the public key.
    root.sh("sed -i \"s/^  domain: ''/  domain: 'example.org'/\" /etc/mxisd/mxisd.yaml");
    let check = root.sh("mxisd check-config -c /etc/mxisd/mxisd.yaml");
    assert!(check.contains("valid"), "{check}");
    root.sh("systemctl enable mxisd");
    assert_eq!(root.is_enabled("mxisd.service"), "enabled");
    let (public_key, log) = served_public_key(&root);
    assert_eq!(public_key.len(), 43, "{log}");
    assert!(
        log.contains("created signing key ed25519:0 in /var/lib/mxisd/keys"),
        "{log}"
    );
    let key = files(&root.path("/var/lib/mxisd/keys"));
    let purge = root.sh("apt-get purge -y mxisd");
    assert!(purge.contains("mxisd: kept /var/lib/mxisd"), "{purge}");
    assert_eq!(files(&root.path("/var/lib/mxisd/keys")), key);
    assert!(!root
        .path("/etc/systemd/system/multi-user.target.wants/mxisd.service")
        .exists());
    assert!(!root.path("/etc/mxisd").exists());
}

/// Installed and purged before any start: the purge removes the configuration and the
/// state directory, as they are empty of keys and the package made them.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_purge_before_any_start_removes_what_the_package_made() {
    let root = first_install();
    root.sh("apt-get purge -y mxisd");
    assert!(!root.path("/etc/mxisd").exists());
    assert!(!root.path("/var/lib/mxisd").exists());
}

/// `systemd-analyze security` rates the shipped unit's sandbox at most 2.0 (0 is fully
/// locked down, 10 not at all).
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_unit_is_hardened() {
    let out = run_ok(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=20"])
            .arg(Path::new(ROOT).join("etc/mxisd.service")),
    );
    let level: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for mxisd.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level: {out}"));
    println!("exposure level {level}");
    assert!(level <= 2.0, "{out}");
}

/// lintian: no error, no warning; the overrides (`debian/lintian-overrides`) carry a reason.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn lintian_finds_nothing() {
    let out = run_ok(
        Command::new("lintian")
            .args(["--fail-on", "error,warning"])
            .arg(package()),
    );
    println!("{out}");
    assert!(
        !out.lines()
            .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "{out}"
    );
    let overrides =
        std::fs::read_to_string(Path::new(ROOT).join("debian/lintian-overrides")).unwrap();
    let mut reason = false;
    for line in overrides.lines() {
        if line.starts_with('#') {
            reason = true;
        } else if !line.trim().is_empty() {
            assert!(reason, "override without a reason above it: {line}");
            reason = false;
        }
    }
}

/// The man page is made from the help text: each command of `mxisd --help` is in it.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_man_page_has_every_command_of_the_help_text() {
    package();
    let page = std::fs::read_to_string(Path::new(ROOT).join("target/man/mxisd.8")).unwrap();
    let (_, help, _) = crate::support::run(&["--help"], None);
    let commands: Vec<String> = help
        .lines()
        // A usage line, not the lines that go on describing one.
        .filter_map(|l| {
            l.strip_prefix("Usage: ")
                .or(l.strip_prefix("       ").filter(|c| c.starts_with("mxisd")))
        })
        .map(|l| l.split("  ").next().unwrap().replace('-', "\\-"))
        .collect();
    assert!(commands.len() >= 3, "{help}");
    for command in commands {
        assert!(
            page.contains(&format!(".B {command}\n")),
            "{command} not in:\n{page}"
        );
    }
}
