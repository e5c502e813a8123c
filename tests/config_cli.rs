//! The command line and the configuration file, against the real binary: exit codes and
//! messages that name the key at fault.

use crate::support;
use crate::support::services::{fresh_database, get, pg_connection};
use crate::support::{run, Mxisd, TempDir};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn write(dir: &TempDir, text: &str) -> String {
    let path = dir.join("mxisd.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn version_and_help() {
    let (code, out, _) = run(&["--version"], None);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("mxisd {}", env!("CARGO_PKG_VERSION")));
    let (code, out, _) = run(&["--help"], None);
    assert_eq!(code, 0);
    assert!(out.contains("check-config"), "{out}");
    let (code, _, err) = run(&["--bogus"], None);
    assert_eq!(code, 2);
    assert!(err.contains("unknown argument '--bogus'"), "{err}");
}

#[test]
fn the_sample_config_is_valid() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/mxisd.example.yaml");
    let (code, out, err) = run(&["check-config", "-c", sample], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid"), "{out}");
    assert!(
        !err.contains("WARN"),
        "the sample must not use unsupported keys: {err}"
    );
}

#[test]
fn a_misspelt_key_is_an_error_naming_path_and_line() {
    let dir = TempDir::new();
    let file = write(
        &dir,
        "matrix:\n  domain: example.org\nserver:\n  port: 8090\n  bindAdress: 0.0.0.0\n",
    );
    for args in [vec!["check-config", "-c", &file], vec!["-c", &file]] {
        let (code, _, err) = run(&args, None);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("unknown key `server.bindAdress` (line 5)"),
            "{err}"
        );
    }
}

#[test]
fn missing_and_ill_typed_keys_are_named() {
    let dir = TempDir::new();
    let (code, _, err) = run(
        &[
            "check-config",
            "-c",
            &write(&dir, "server:\n  port: 8090\n"),
        ],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("`matrix.domain` is required"), "{err}");

    let file = write(
        &dir,
        "matrix:\n  domain: example.org\nhttp:\n  workers: many\n",
    );
    let (code, _, err) = run(&["check-config", "-c", &file], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("http.workers") && err.contains("line 4"),
        "{err}"
    );

    let file = write(
        &dir,
        "matrix:\n  domain: example.org\n   bad: indentation\n",
    );
    let (code, _, err) = run(&["check-config", "-c", &file], None);
    assert_eq!(code, 1);
    assert!(err.contains("line 3"), "{err}");

    let (code, _, err) = run(
        &[
            "check-config",
            "-c",
            &dir.join("absent.yaml").display().to_string(),
        ],
        None,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("absent.yaml") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn default_config_file_is_found_in_the_working_directory() {
    let dir = TempDir::new();
    let (code, _, err) = run(&["check-config"], Some(dir.path()));
    assert_eq!(code, 1);
    assert!(
        err.contains("/etc/mxisd/mxisd.yaml") && err.contains("mxisd.yaml"),
        "{err}"
    );
    write(&dir, "matrix:\n  domain: example.org\n");
    let (code, out, err) = run(&["check-config"], Some(dir.path()));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mxisd.yaml: valid"), "{out}");
}

/// An mxisd 1.x configuration as operators have it (beside the test's own `matrix`, `server`,
/// `key` and `storage`).
const LEGACY: &str = "\
appsvc:
  enabled: true
  endpoint:
    toHS:
      url: 'http://localhost:8008'
      token: 'secret'
threepid:
  medium:
    email:
      identity:
        from: 'matrix-identity@example.org'
        name: 'Example Identity Server'
      connectors:
        smtp:
          host: 'smtp.example.org'
          port: 587
          tls: 1
session:
  policy:
    validation:
      enabled: true
";

/// An mxisd 1.x configuration as operators have them: sections this version does not
/// implement yet are accepted with one warning each, and the server starts.
#[test]
fn an_existing_mxisd_config_starts_with_warnings() {
    let s = Mxisd::start(LEGACY);
    assert_eq!(s.get("/_matrix/identity/v2/pubkey/ed25519:0").status, 200);
    let log = s.log();
    assert_eq!(log.matches("`appsvc` (line").count(), 1, "{log}");
    // Sessions and their notifications are implemented: no warning.
    for key in ["`threepid", "`session"] {
        assert_eq!(log.matches(key).count(), 0, "{key} in {log}");
    }
    assert!(
        log.contains("recognised (mxisd/ma1sd), not supported"),
        "{log}"
    );
}

#[test]
fn a_port_in_use_stops_the_start_with_the_key_named() {
    let first = Mxisd::start("");
    let dir = TempDir::new();
    let text = support::config_text(&dir, &dir.join("keys"), "")
        .replace("port: 0", &format!("port: {}", first.addr.port()));
    let (code, _, err) = run(&["-c", &write(&dir, &text)], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("server.port") && err.contains(&first.addr.port().to_string()),
        "{err}"
    );
}

/// Keys whose being ignored would fail at run time or allow what the operator forbade: the
/// start stops naming the key and its line, and check-config says the same.
#[test]
fn keys_that_cannot_be_ignored_stop_the_start_and_check_config() {
    let dir = TempDir::new();
    let keys = dir.join("keys");
    for (extra, key, line) in [
        (
            "notification:\n  handler:\n    email: sendgrid\n  handlers:\n    sendgrid:\n      api:\n        key: x\n",
            "notification.handler.email",
            13,
        ),
        (
            "invite:\n  policy:\n    ifSender:\n      hasRole: ['admin']\n",
            "invite.policy",
            12,
        ),
        (
            "auth:\n  rewrite:\n    user:\n      rules:\n        - regex: '^(.*)@example.org$'\n          medium: email\n",
            "auth.rewrite",
            12,
        ),
        (
            "exec:\n  enabled: true\n",
            "exec.enabled",
            12,
        ),
    ] {
        let file = write(&dir, &support::config_text(&dir, &keys, extra));
        let named = format!("`{key}` (line {line})");
        let (code, out, err) = run(&["check-config", "-c", &file], None);
        assert_eq!(code, 1, "check-config accepted {key}: {out}");
        assert!(err.contains(&named), "{key}: {err}");
        let (code, _, err) = run(&["-c", &file], None);
        assert_eq!(code, 1, "the start accepted {key}: {err}");
        assert!(err.contains(&named), "{key}: {err}");
    }
}

/// Keys that only add a feature this version lacks: one warning each at the start, and the
/// server serves.
#[test]
fn keys_that_only_add_a_feature_start_with_one_warning_each() {
    let extra = "\
appsvc:\n  enabled: true\n\
directory:\n  exclude:\n    homeserver: true\n\
forward:\n  servers: ['matrix-org']\n\
notification:\n  handler:\n    email: raw\n    msisdn: raw\n\
lookup:\n  recursive:\n    enabled: true\n\
invite:\n  expiration:\n    resolveTo: '@expired:example.org'\n";
    let s = Mxisd::start(extra);
    assert_eq!(s.get("/_matrix/identity/v2").status, 200);
    let log = s.log();
    for key in ["`appsvc`", "`directory`", "`invite.expiration.resolveTo`"] {
        assert_eq!(log.matches(key).count(), 1, "{key} in {log}");
    }
    // `forward` and `lookup.recursive` are implemented: only forwarding over v1 to
    // matrix.org, which no longer answers it, is warned about.
    assert_eq!(
        log.matches("forward.servers names `matrix-org`").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("`lookup.recursive`"), "{log}");
    // `raw` is what this version does: nothing to warn about.
    assert!(!log.contains("notification"), "{log}");
}

/// ma1sd's `accountConfig.allowOnlyTrustDomains: true` lets only users of `matrix.domain`
/// register: it is the allow list of that domain, not a key to ignore.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn ma1sd_trusted_domains_only_keep_other_homeservers_out() {
    let hs = crate::support::fake_homeserver::FakeHomeserver::start("127.0.0.1", 0, &[]);
    let server = format!("127.0.0.1:{}", hs.port);
    let s = Mxisd::start(&crate::support::fake_homeserver::federation_config(
        "  ipRangeWhitelist: ['127.0.0.0/8']\naccountConfig:\n  allowOnlyTrustDomains: true\n",
    ));
    let body = serde_json::json!({"access_token": format!("user:@eve:{server}"), "matrix_server_name": server});
    s.post("/_matrix/identity/v2/account/register", &body.to_string())
        .assert_error(403, "M_UNAUTHORIZED");
    let dir = TempDir::new();
    let both = support::config_text(
        &dir,
        &dir.join("keys"),
        "account:\n  homeserverAllowList: ['a.example']\naccountConfig:\n  allowOnlyTrustDomains: true\n",
    );
    let (code, _, err) = run(&["check-config", "-c", &write(&dir, &both)], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("`accountConfig.allowOnlyTrustDomains`"),
        "{err}"
    );
}

/// Whether `mxisd -c file`, run in `cwd`, gets as far as listening: `Ok`, or its log.
fn starts(file: &str, cwd: &Path) -> Result<(), String> {
    let mut child = Command::new(support::BIN)
        .args(["-c", file])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on http://") {
                let _ = tx.send(Ok(()));
                return;
            }
            log.push_str(&line);
            log.push('\n');
        }
        let _ = tx.send(Err(log));
    });
    let verdict = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| Err("neither listened nor exited within 30 s".into()));
    let _ = child.kill();
    let _ = child.wait();
    verdict
}

/// One rule: what `check-config` accepts, the start accepts, and what it refuses, the start
/// refuses. Both are run on every configuration these tests write as a file (the sample,
/// the legacy file, the refused and warned keys, the misspelt and ill-typed ones) and on
/// the connection strings and CA files mxisd and ma1sd users have.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn check_config_and_the_start_agree_on_every_fixture() {
    let dir = TempDir::new();
    let keys = dir.join("keys");
    let full = |extra: &str| support::config_text(&dir, &keys, extra);
    let db = fresh_database("agree");
    let jdbc = |options: &str| {
        full(&format!(
            "storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      database: '//127.0.0.1:{}/{db}?user={}{options}'\n",
            get("PG_PORT"),
            get("PG_USER")
        ))
    };
    let not_pem = dir.join("not-a-certificate.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let self_signed = support::data().join("self-signed.pem");
    let ca_file = |file: &Path| {
        full(&format!(
            "federation:\n  tls:\n    caFile: '{}'\n",
            file.display()
        ))
    };
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/etc/mxisd.example.yaml"
    ))
    .unwrap()
    .replace("port: 8090", "port: 0");
    let fixtures: Vec<(&str, String, bool)> = vec![
        ("the sample", sample, true),
        ("the least", full(""), true),
        ("an mxisd 1.x file", full(LEGACY), true),
        ("a misspelt key", "matrix:\n  domain: example.org\nserver:\n  port: 0\n  bindAdress: 0.0.0.0\n".into(), false),
        ("no domain", "server:\n  port: 0\n".into(), false),
        ("an ill-typed value", full("http:\n  workers: many\n"), false),
        ("a bad indentation", "matrix:\n  domain: example.org\n   bad: indentation\n".into(), false),
        ("sendgrid", full("notification:\n  handler:\n    email: sendgrid\n"), false),
        ("invite.policy", full("invite:\n  policy:\n    ifSender:\n      hasRole: ['admin']\n"), false),
        ("auth.rewrite", full("auth:\n  rewrite:\n    user:\n      rules: []\n"), false),
        ("exec", full("exec:\n  enabled: true\n"), false),
        ("features", full("appsvc:\n  enabled: true\nforward:\n  servers: []\n"), true),
        ("JDBC options", jdbc("&ApplicationName=mxisd&connectTimeout=3&loginTimeout=3"), true),
        ("sslmode=disable", jdbc("&sslmode=disable"), true),
        ("ssl=false", jdbc("&ssl=false"), true),
        ("ssl=maybe", jdbc("&ssl=maybe"), false),
        ("a custom SSL factory", jdbc("&sslfactory=com.example.Factory"), false),
        ("a client certificate", jdbc("&sslcert=/etc/ssl/client.pem"), false),
        ("sslrootcert not there", jdbc("&ssl=true&sslrootcert=/nonexistent.pem"), false),
        ("no port", jdbc("").replace("127.0.0.1:", "127.0.0.1:port"), false),
        (
            "libpq's form",
            full(&format!("storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{} sslmode=disable'\n", pg_connection(&db))),
            true,
        ),
        (
            "a misspelt libpq key",
            full(&format!("storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{} hots=db'\n", pg_connection(&db))),
            false,
        ),
        (
            "a JDBC SQL store",
            full(&format!("sql:\n  enabled: true\n  type: postgresql\n  connection: '//127.0.0.1:{}/{db}?user={}&sslmode=disable&ApplicationName=x'\n", get("PG_PORT"), get("PG_USER"))),
            true,
        ),
        ("a caFile that is no PEM", ca_file(&not_pem), false),
        ("a self-signed caFile", ca_file(&self_signed), true),
    ];
    for (name, text, valid) in fixtures {
        let file = dir.join("mxisd.yaml");
        std::fs::write(&file, &text).unwrap();
        let file = file.to_str().unwrap();
        let (code, _, err) = run(&["check-config", "-c", file], Some(dir.path()));
        let started = starts(file, dir.path());
        assert_eq!(
            (code == 0, started.is_ok()),
            (valid, valid),
            "{name}: check-config said {code} ({err}), the start {started:?}"
        );
    }
}
