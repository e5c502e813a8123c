//! The command line and the configuration file, against the real binary: exit codes and
//! messages that name the key at fault.

use crate::support;
use crate::support::{run, Mxisd, TempDir};

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

/// An mxisd 1.x configuration as operators have them: sections this version does not
/// implement yet are accepted with one warning each, and the server starts.
#[test]
fn an_existing_mxisd_config_starts_with_warnings() {
    let legacy = "\
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
    let s = Mxisd::start(legacy);
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
    for key in [
        "`appsvc`",
        "`directory`",
        "`forward`",
        "`lookup.recursive`",
        "`invite.expiration.resolveTo`",
    ] {
        assert_eq!(log.matches(key).count(), 1, "{key} in {log}");
    }
    // `raw` is what this version does: nothing to warn about.
    assert!(!log.contains("notification"), "{log}");
}

/// ma1sd's `accountConfig.allowOnlyTrustDomains: true` lets only users of `matrix.domain`
/// register: it is the allow list of that domain, not a key to ignore.
#[test]
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
