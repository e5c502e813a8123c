//! mxisd's signing key store at `key.path`: the directory form, the legacy single file, fresh
//! creation with private modes, loose modes tightened, invalid keys, over the real binary.

use crate::support;
use crate::support::{Mxisd, TempDir};
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The public key of the spec's test seed, which the shared samples hold.
const SAMPLE_PUBLIC_KEY: &str = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI";

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A temporary directory holding a copy of the sample key store of tests/data at `keys`.
fn sample_store() -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new();
    let keys = dir.join("keys");
    copy_dir(&support::data().join("mxisd-keystore"), &keys);
    (dir, keys)
}

fn is_valid(s: &Mxisd, key: &str) -> Value {
    let key = key.replace('+', "%2B").replace('/', "%2F");
    s.get(&format!(
        "/_matrix/identity/v2/pubkey/isvalid?public_key={key}"
    ))
    .json()["valid"]
        .clone()
}

#[test]
fn the_shared_directory_form_sample_loads_and_loose_modes_are_tightened() {
    let (dir, keys) = sample_store();
    fs::set_permissions(
        keys.join("regular/ed25519/0"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let s = Mxisd::start_in(dir, &keys, "");
    let r = s.get("/_matrix/identity/v2/pubkey/ed25519:0");
    assert_eq!(r.json(), json!({"public_key": SAMPLE_PUBLIC_KEY}));
    assert_eq!(is_valid(&s, SAMPLE_PUBLIC_KEY), json!(true));
    assert_eq!(mode(&keys.join("regular/ed25519/0")), 0o600);
    assert!(
        s.log()
            .contains("was readable by others: its mode is now 0600"),
        "{}",
        s.log()
    );
}

#[test]
fn a_legacy_key_file_is_migrated() {
    let dir = TempDir::new();
    let keys = dir.join("signing.key");
    let legacy = support::data().join("mxisd-legacy-signing.key");
    fs::copy(&legacy, &keys).unwrap();
    let s = Mxisd::start_in(dir, &keys, "");
    assert_eq!(
        s.get("/_matrix/identity/api/v1/pubkey/ed25519:0").json()["public_key"],
        SAMPLE_PUBLIC_KEY
    );
    let backup = format!("{}.backup-before-migration", keys.display());
    assert_eq!(
        fs::read_to_string(&backup).unwrap(),
        fs::read_to_string(&legacy).unwrap()
    );
    assert!(keys.is_dir());
    let current: Value =
        serde_json::from_str(&fs::read_to_string(keys.join("current")).unwrap()).unwrap();
    assert_eq!(
        current,
        json!({"type": "Regular", "algo": "ed25519", "serial": "0"})
    );
    let key: Value =
        serde_json::from_str(&fs::read_to_string(keys.join("regular/ed25519/0")).unwrap()).unwrap();
    assert_eq!(key["key"], fs::read_to_string(&legacy).unwrap().trim());
    assert_eq!(key["isValid"], true);
    assert!(s.wait_for_log("migrated legacy key file"), "{}", s.log());
    // The key was migrated, not created.
    assert!(!s.log().contains("created signing key"), "{}", s.log());
}

#[test]
fn a_fresh_store_is_private_and_survives_restarts() {
    let dir = TempDir::new();
    let keys = dir.join("var/keys");
    let first = Mxisd::start_in(dir, &keys, "");
    let public = first.get("/_matrix/identity/v2/pubkey/ed25519:0").json()["public_key"].clone();
    assert_eq!(mode(&keys), 0o700);
    assert_eq!(mode(&keys.join("regular/ed25519")), 0o700);
    assert_eq!(mode(&keys.join("regular/ed25519/0")), 0o600);
    assert_eq!(mode(&keys.join("current")), 0o600);
    assert_eq!(mode(&first.dir.join("mxisd.db")), 0o600);
    let dir = TempDir::new();
    let again = Mxisd::start_in(dir, &keys, "");
    assert_eq!(
        again.get("/_matrix/identity/v2/pubkey/ed25519:0").json()["public_key"],
        public
    );
    drop(first);
}

#[test]
fn a_key_marked_invalid_is_answered_as_invalid_and_replaced() {
    let (dir, keys) = sample_store();
    let file = keys.join("regular/ed25519/0");
    let mut key: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    key["isValid"] = json!(false);
    fs::write(&file, key.to_string()).unwrap();
    let s = Mxisd::start_in(dir, &keys, "");
    // Still served, but no longer valid; a new current key signs from now on.
    assert_eq!(
        s.get("/_matrix/identity/v2/pubkey/ed25519:0").json()["public_key"],
        SAMPLE_PUBLIC_KEY
    );
    assert_eq!(is_valid(&s, SAMPLE_PUBLIC_KEY), json!(false));
    let new = s.get("/_matrix/identity/v2/pubkey/ed25519:1").json()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new, SAMPLE_PUBLIC_KEY);
    assert_eq!(is_valid(&s, &new), json!(true));
    assert!(s.wait_for_log("signing with ed25519:1"), "{}", s.log());
}

#[test]
fn a_broken_store_stops_the_start_naming_the_file() {
    let (dir, keys) = sample_store();
    fs::write(keys.join("current"), "not json").unwrap();
    let config = dir.join("mxisd.yaml");
    fs::write(&config, support::config_text(&dir, &keys, "")).unwrap();
    let (code, _, err) = support::run(&["-c", &config.display().to_string()], None);
    assert_eq!(code, 1);
    assert!(err.contains("key.path") && err.contains("current"), "{err}");

    fs::write(
        keys.join("current"),
        r#"{"type":"Regular","algo":"ed25519","serial":"9"}"#,
    )
    .unwrap();
    let (code, _, err) = support::run(&["-c", &config.display().to_string()], None);
    assert_eq!(code, 1);
    assert!(err.contains("serial 9"), "{err}");
}

/// A key store the service user cannot read (made by root, say): the start stops with one
/// command that fixes the whole store, not the first file it met.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_store_the_user_cannot_read_names_one_fix_for_all_of_it() {
    let (dir, keys) = sample_store();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // The store's files stay root's and private; its directories may be entered.
    let mut dirs = vec![keys.clone()];
    while let Some(d) = dirs.pop() {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
    }
    // The binary where `nobody` may run it (a checkout may sit in a private directory).
    let bin = dir.join("mxisd");
    if fs::hard_link(support::BIN, &bin).is_err() {
        fs::copy(support::BIN, &bin).unwrap();
    }
    let config = dir.join("mxisd.yaml");
    fs::write(
        &config,
        format!(
            "matrix:\n  domain: example.org\nkey:\n  path: '{}'\nstorage:\n  provider:\n    sqlite:\n      database: '/nonexistent/mxisd.db'\n",
            keys.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&bin)
        .arg("-c")
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    let k = keys.display();
    assert!(
        err.contains(&format!(
            "chown -R 65534:65534 '{k}' && chmod -R go-rwx '{k}'"
        )),
        "{err}"
    );
    assert_eq!(err.matches("chown").count(), 1, "one command: {err}");
}
