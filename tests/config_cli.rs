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
