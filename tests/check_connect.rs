//! `check-config --connect` against the real test services (slapd, PostgreSQL, the SMTP
//! sink, a second mxisd as identity server): every backend OK, then each failing one named
//! with its reason and exit code 1; `mxisd lookup` against slapd printing its filter and
//! answer; and the steps `-v` and `-vv` add to the server's log.

use crate::support::fake_homeserver::{federation_config, FakeRestBackend};
use crate::support::services::{ensure_up, fresh_database, get, pg_connection};
use crate::support::{run, synapse_sqlite, Mxisd, TempDir};

/// The LDAP section for the test slapd, with `password` for the admin's bind.
fn ldap(port: &str, password: &str) -> String {
    format!(
        "ldap:\n  enabled: true\n  connection:\n    host: '127.0.0.1'\n    port: {port}\n    bindDn: '{}'\n    bindPassword: '{password}'\n    baseDNs: ['ou=people,{}']\n    timeout: 2\n  attribute:\n    uid:\n      value: uid\n",
        get("LDAP_ADMIN_DN"),
        get("LDAP_BASE"),
    )
}

/// The SMTP sink's connector section; `extra`: more `smtp` lines (indented 10).
fn smtp(extra: &str) -> String {
    format!(
        "threepid:\n  medium:\n    email:\n      identity:\n        from: 'identity@example.org'\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {}\n          timeout: 3\n{extra}",
        get("SMTP_PORT")
    )
}

/// A whole configuration: our own `matrix` (the identity server `remote` listed under
/// `two`, forwarded to), keys in `dir`, state on the PostgreSQL database `db`, and `extra`.
fn config(dir: &TempDir, remote: &str, db_connection: &str, extra: &str) -> String {
    let text = format!(
        "matrix:\n  domain: example.org\n  identity:\n    servers:\n      two: ['{remote}']\nserver:\n  port: 0\nkey:\n  path: '{}'\nstorage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{db_connection}'\n      timeout: 3\nforward:\n  servers: ['two']\n{extra}{}",
        dir.join("keys").display(),
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n"),
    );
    let path = dir.join("mxisd.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The line of `out` about `what` (the start of a line, after its indent).
fn line<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find(|l| l.trim_start().starts_with(what))
        .unwrap_or_else(|| panic!("no line for {what} in:\n{out}"))
}

/// The second identity server (of `example.org` too): a memory store knowing
/// `zed@other.org` as `@zed:example.org`.
fn other_server() -> Mxisd {
    Mxisd::start(
        "memory:\n  enabled: true\n  identities:\n    - username: zed\n      password: zed-password\n      threepids:\n        - medium: email\n          address: zed@other.org\n",
    )
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn every_backend_answers_ok() {
    ensure_up();
    let other = other_server();
    let backend = FakeRestBackend::start(false);
    let dir = TempDir::new();
    let sqlite = synapse_sqlite(&dir, &[]);
    let db = fresh_database("check_connect");
    let file = config(
        &dir,
        &other.url(""),
        &pg_connection(&db),
        &format!(
            "{}synapseSql:\n  enabled: true\n  type: sqlite\n  connection: '{sqlite}'\nrest:\n  enabled: true\n  host: 'http://127.0.0.1:{}'\n  timeout: 2\n{}    msisdn:\n      connectors:\n        twilio:\n          accountSid: ACtest\n          authToken: secret-token\n          number: '+15550001111'\n          baseUrl: 'http://127.0.0.1:9'\n",
            ldap(get("LDAP_PORT"), get("LDAP_ADMIN_PASSWORD")),
            backend.port,
            smtp("          tls: 1\n")
        ),
    );
    let (code, out, err) = run(&["check-config", "--connect", "-c", &file], None);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("mxisd.yaml: valid"), "{out}");
    assert!(line(&out, "key.path").ends_with(": OK"), "{out}");
    let ldap_line = line(&out, "ldap ldap://127.0.0.1:");
    assert!(
        ldap_line.contains(&format!(
            "OK: bound as {} at ldap://127.0.0.1:{}, base DNs found: ou=people,{}",
            get("LDAP_ADMIN_DN"),
            get("LDAP_PORT"),
            get("LDAP_BASE")
        )),
        "{out}"
    );
    assert!(
        line(&out, "synapseSql")
            .contains("OK: lookup of check-config@mxisd.invalid ran: not found, as expected"),
        "{out}"
    );
    assert!(
        line(
            &out,
            &format!(
                "rest http://127.0.0.1:{}/_mxisd/backend/api/v1/identity/single",
                backend.port
            )
        )
        .contains("OK: lookup of check-config@mxisd.invalid ran: not found, as expected"),
        "{out}"
    );
    assert!(
        line(&out, "state: PostgreSQL").contains(
            "OK: connected; no schema yet (the first start creates it, up to 0014_peer_push_parts)"
        ),
        "{out}"
    );
    // The sink offers no STARTTLS, which tls: 1 then goes without.
    assert!(
        line(&out, "smtp 127.0.0.1:").contains("OK: EHLO, no AUTH (no login configured)"),
        "{out}"
    );
    assert!(
        line(&out, "twilio http://127.0.0.1:9")
            .ends_with("skipped: no call made (an SMS, even to test, costs money)"),
        "{out}"
    );
    assert!(
        line(
            &out,
            &format!("identity server {} (forward.servers)", other.url(""))
        )
        .contains("OK: v1 and v2 answer"),
        "{out}"
    );
    assert!(!out.contains("FAILED"), "{out}");

    // Once the server has started on the database, its schema is current.
    drop(Mxisd::spawn(TempDir::new(), std::path::Path::new(&file)));
    let (code, out, _) = run(&["check-config", "--connect", "-c", &file], None);
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "state: PostgreSQL")
            .contains("OK: connected; schema 0014_peer_push_parts (current)"),
        "{out}"
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn each_failing_backend_is_named_with_its_reason() {
    ensure_up();
    let dir = TempDir::new();
    // Nothing listens on these.
    let (pg_port, id_port) = (crate::support::free_port(), crate::support::free_port());
    let file = config(
        &dir,
        &format!("http://127.0.0.1:{id_port}"),
        &format!("host=127.0.0.1 port={pg_port} user=postgres dbname=none"),
        &format!(
            "{}{}",
            ldap(get("LDAP_PORT"), "not-the-password"),
            smtp("          tls: 2\n")
        ),
    );
    let (code, out, err) = run(&["check-config", "--connect", "-c", &file], None);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        line(&out, "ldap ").contains(&format!(
            "FAILED: binding as {}: LDAP operation result: rc=49 (invalidCredentials)",
            get("LDAP_ADMIN_DN")
        )),
        "{out}"
    );
    assert!(
        line(&out, "ldap ").contains("wrong password, or no such DN"),
        "{out}"
    );
    let state = line(&out, "state: PostgreSQL");
    assert!(
        state.contains("FAILED: connecting:") && state.contains("refused"),
        "{out}"
    );
    assert!(
        line(&out, "smtp ")
            .contains("FAILED: the server does not offer STARTTLS (tls: 2 requires it)"),
        "{out}"
    );
    let remote = line(&out, &format!("identity server http://127.0.0.1:{id_port}"));
    assert!(
        remote.contains("FAILED: neither v1 nor v2 answers: unreachable:"),
        "{out}"
    );
    assert!(
        out.trim_end().ends_with("check-config: FAILED (see above)"),
        "{out}"
    );

    // AUTH refused: the sink wants TLS before a login, and tls: 0 never starts it.
    let file = config(
        &dir,
        &format!("http://127.0.0.1:{id_port}"),
        &format!("host=127.0.0.1 port={pg_port} user=postgres dbname=none"),
        &smtp("          tls: 0\n          login: alice\n          password: secret\n"),
    );
    let (code, out, _) = run(&["check-config", "--connect", "-c", &file], None);
    assert_eq!(code, 1, "{out}");
    assert!(
        line(&out, "smtp ").contains("FAILED: AUTH: the server answered 5"),
        "{out}"
    );

    // A LDAP port where nothing listens: said so, with what to check.
    let file = config(
        &dir,
        &format!("http://127.0.0.1:{id_port}"),
        &format!("host=127.0.0.1 port={pg_port} user=postgres dbname=none"),
        &ldap(
            &crate::support::free_port().to_string(),
            get("LDAP_ADMIN_PASSWORD"),
        ),
    );
    let (code, out, _) = run(&["check-config", "--connect", "-c", &file], None);
    assert_eq!(code, 1, "{out}");
    let ldap_line = line(&out, "ldap ");
    assert!(
        ldap_line.contains("FAILED: connecting to ldap://127.0.0.1:")
            && ldap_line.contains("check ldap.connection.host and port"),
        "{out}"
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_v2_only_remote_fails_remote_sessions() {
    ensure_up();
    // A server that serves v2 only (as matrix.org today).
    let other_dir = TempDir::new();
    let other_config = other_dir.join("mxisd.yaml");
    std::fs::write(
        &other_config,
        format!(
            "matrix:\n  domain: other.org\n  v1: false\nserver:\n  port: 0\nkey:\n  path: '{}'\nstorage:\n  provider:\n    sqlite:\n      database: '{}'\n",
            other_dir.join("keys").display(),
            other_dir.join("mxisd.db").display()
        ),
    )
    .unwrap();
    let other = Mxisd::spawn(other_dir, &other_config);
    let dir = TempDir::new();
    let db = fresh_database("check_connect_v2");
    let file = config(
        &dir,
        &other.url(""),
        &pg_connection(&db),
        "session:\n  policy:\n    validation:\n      enabled: true\n      forRemote:\n        enabled: true\n        toLocal: false\n        toRemote:\n          enabled: true\n          server: 'two'\n",
    );
    let (code, out, err) = run(&["check-config", "--connect", "-c", &file], None);
    assert_eq!(code, 1, "{out}\n{err}");
    // As a forwarder it needs a token (v2 only); for remote sessions it cannot serve.
    assert!(
        line(&out, &format!("identity server {} (forward.servers)", other.url(""))).contains(
            "FAILED: v2 answers, v1 does not, and lookup.recursive.accessTokens has no token for it"
        ),
        "{out}"
    );
    assert!(
        line(
            &out,
            &format!(
                "identity server {} (session policy toRemote)",
                other.url("")
            )
        )
        .contains("FAILED: v2 answers, v1 does not: remote sessions need v1"),
        "{out}"
    );
}

/// A configuration with the test slapd as the only store, nothing asked elsewhere.
fn ldap_only(dir: &TempDir) -> String {
    let text = format!(
        "matrix:\n  domain: example.org\nkey:\n  path: '{}'\nstorage:\n  provider:\n    sqlite:\n      database: '{}'\n{}lookup:\n  recursive:\n    enabled: false\n{}",
        dir.join("keys").display(),
        dir.join("mxisd.db").display(),
        ldap(get("LDAP_PORT"), get("LDAP_ADMIN_PASSWORD")),
        federation_config(""),
    );
    let path = dir.join("ldap.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn lookup_prints_the_ldap_filter_and_the_answer() {
    ensure_up();
    let dir = TempDir::new();
    let file = ldap_only(&dir);
    let (code, out, err) = run(&["lookup", "-c", &file, "email", "Alice@Example.org"], None);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        out.trim(),
        "email alice@example.org: @alice:example.org",
        "{err}"
    );
    assert!(
        err.contains("email \"Alice@Example.org\" is asked as \"alice@example.org\""),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "ldap: search of [\"ou=people,{}\"] (subtree) with filter (|(mailPrimaryAddress=alice@example.org)(mail=alice@example.org)(otherMailbox=alice@example.org))",
            get("LDAP_BASE")
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "lookup step: store ldap, email \"alice@example.org\": found @alice:example.org in "
        ),
        "{err}"
    );
    assert!(err.contains("only the local stores are asked"), "{err}");

    // Values are escaped in the filter (RFC 4515), and a miss is exit code 1.
    let (code, out, err) = run(
        &["lookup", "-c", &file, "email", "x*)(uid=*@example.org"],
        None,
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(
        out.trim(),
        "email x*)(uid=*@example.org: not found",
        "{err}"
    );
    assert!(
        err.contains("(mail=x\\2a\\29\\28uid=\\2a@example.org)"),
        "{err}"
    );
    assert!(err.contains(": not found in "), "{err}");

    // A wrong bind password: the step fails, saying why.
    std::fs::write(
        &file,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace(get("LDAP_ADMIN_PASSWORD"), "wrong"),
    )
    .unwrap();
    let (code, out, err) = run(&["lookup", "-c", &file, "email", "alice@example.org"], None);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("lookup failed: identity store ldap: binding as")
            && out.contains("invalidCredentials"),
        "{out}"
    );
    assert!(
        err.contains("lookup step: store ldap, email \"alice@example.org\": failed: binding as"),
        "{err}"
    );

    let (code, _, err) = run(&["lookup", "-c", &file, "email"], None);
    assert_eq!(code, 2);
    assert!(
        err.contains("lookup needs a medium and an address"),
        "{err}"
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn v_logs_each_lookup_step_and_vv_each_outbound_call() {
    ensure_up();
    let backend = FakeRestBackend::start(false);
    let rest = format!(
        "rest:\n  enabled: true\n  host: 'http://127.0.0.1:{}'\n  timeout: 2\n{}{}",
        backend.port,
        ldap(get("LDAP_PORT"), get("LDAP_ADMIN_PASSWORD")),
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    );
    // `-v` / `-vv` after the binary, before the `-c FILE` the test support adds.
    let with = |flag: &str| {
        Mxisd::start_wrapped(&rest, &["sh", "-c", &format!("exec \"$0\" {flag} \"$@\"")])
    };
    let s = with("-v");
    let r = s.get("/_matrix/identity/api/v1/lookup?medium=email&address=erin%40example.org");
    assert_eq!(r.json()["mxid"], "@erin:example.org", "{}", r.text);
    assert!(s.wait_for_log("lookup step: store rest"), "{}", s.log());
    let log = s.log();
    assert!(
        log.contains("lookup step: store ldap, email \"erin@example.org\": not found in "),
        "{log}"
    );
    assert!(log.contains("(mail=erin@example.org)"), "{log}");
    assert!(
        log.contains(
            "lookup step: store rest, email \"erin@example.org\": found @erin:example.org in "
        ),
        "{log}"
    );
    assert!(
        !log.contains("outbound POST"),
        "-v shows no outbound call: {log}"
    );
    drop(s);

    let s = with("-vv");
    let r = s.get("/_matrix/identity/api/v1/lookup?medium=email&address=erin%40example.org");
    assert_eq!(r.json()["mxid"], "@erin:example.org", "{}", r.text);
    let call = format!(
        "outbound POST http://127.0.0.1:{}/_mxisd/backend/api/v1/identity/single: HTTP 200 in ",
        backend.port
    );
    assert!(s.wait_for_log(&call), "{}", s.log());
}

/// A read-only bind mount of a directory, undone when dropped.
struct ReadOnly(std::path::PathBuf);

impl ReadOnly {
    fn mount(dir: &std::path::Path) -> ReadOnly {
        let mount = |args: &[&str]| {
            let status = std::process::Command::new("mount")
                .args(args)
                .status()
                .unwrap();
            assert!(status.success(), "mount {args:?}");
        };
        let d = dir.to_str().unwrap();
        mount(&["--bind", d, d]);
        let guard = ReadOnly(dir.to_path_buf());
        mount(&["-o", "remount,bind,ro", d]);
        guard
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_read_only_key_store_names_the_drop_in_that_fixes_it() {
    let dir = TempDir::new();
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("keys")).unwrap();
    let file = dir.join("mxisd.yaml");
    std::fs::write(
        &file,
        format!(
            "matrix:\n  domain: example.org\nkey:\n  path: '{0}/keys'\nstorage:\n  provider:\n    sqlite:\n      database: '{0}/mxisd.db'\n",
            data.display()
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    let (code, out, _) = run(&["check-config", "-c", &file], None);
    assert_eq!(code, 0, "{out}");
    let _ro = ReadOnly::mount(&data);
    let (code, out, err) = run(&["check-config", "-c", &file], None);
    assert_eq!(code, 1, "{out}\n{err}");
    let d = data.display();
    assert!(
        line(&out, "key.path").contains(&format!(
            "FAILED: {d}/keys is on a read-only file system here; under the packaged systemd unit, which lets mxisd write only /var/lib/mxisd, add a drop-in (systemctl edit mxisd) with [Service] ReadWritePaths={d}/keys"
        )),
        "{out}"
    );
    assert!(
        line(&out, "storage.provider.sqlite.database")
            .contains(&format!("FAILED: {d} is on a read-only file system here")),
        "{out}"
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn lookup_names_the_remote_server_it_asked() {
    ensure_up();
    let other = other_server();
    let dir = TempDir::new();
    // No local store; the state is not opened by `mxisd lookup`.
    let file = config(
        &dir,
        &other.url(""),
        "host=127.0.0.1 port=1 dbname=none",
        "",
    );
    let (code, out, err) = run(
        &["lookup", "-v", "-c", &file, "email", "zed@other.org"],
        None,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.trim(), "email zed@other.org: @zed:example.org", "{err}");
    assert!(err.contains("other identity servers are asked"), "{err}");
    assert!(
        err.contains(&format!(
            "lookup step: identity server {}, email \"zed@other.org\": found @zed:example.org in ",
            other.url("")
        )),
        "{err}"
    );
    // -v: the outbound calls, without their query.
    assert!(
        err.contains(&format!(
            "outbound GET {}/_matrix/identity/api/v1/lookup: HTTP 200 in ",
            other.url("")
        )),
        "{err}"
    );
    assert!(!err.contains("zed%40other.org"), "{err}");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn files_the_service_user_cannot_use_are_named_with_one_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The binary where `nobody` may run it (a checkout may sit in a private directory).
    let bin = dir.join("mxisd");
    if std::fs::hard_link(crate::support::BIN, &bin).is_err() {
        std::fs::copy(crate::support::BIN, &bin).unwrap();
    }
    // A key store left to root, 0700 as the start makes it; the database's directory to
    // be created in a directory `nobody` may not write.
    let keys = dir.join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = dir.join("mxisd.yaml");
    std::fs::write(
        &file,
        format!(
            "matrix:\n  domain: example.org\nkey:\n  path: '{}'\nstorage:\n  provider:\n    sqlite:\n      database: '{}/state/mxisd.db'\n",
            keys.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&bin)
        .args(["check-config", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let (code, out) = (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    );
    assert_eq!(code, Some(1), "{out}");
    let d = dir.path().display();
    assert!(
        out.contains("files (checked for the user running this command, nobody):"),
        "{out}"
    );
    assert!(
        line(&out, "key.path").contains(&format!("FAILED: nobody cannot read {d}/keys")),
        "{out}"
    );
    // Still to be created: a warning only, as the caller may not be the service's user.
    assert!(
        line(&out, "storage.provider.sqlite.database").contains(&format!(
            "WARNING: {d}/state/mxisd.db does not exist and nobody cannot create the database in {d} (owner uid 0, mode 755)"
        )),
        "{out}"
    );
    assert!(
        line(&out, "to fix:").ends_with(&format!(
            "install -d -m 700 -o nobody '{d}/state' && chown -R nobody: '{d}/keys'"
        )),
        "{out}"
    );
}
