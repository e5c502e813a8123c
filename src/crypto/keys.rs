//! The server's long-term signing keys, kept in mxisd's key store at `key.path`.
//!
//! Directory form (mxisd ≥ 1.3, ma1sd): `<path>/current` is `{"type":"Regular","algo":"ed25519",
//! "serial":"0"}` and names the key in use; each key is `<path>/<type>/<algo>/<serial>`
//! holding `{"version":"0","isValid":true,"key":"<unpadded base64 seed>"}`. The key id is
//! `<algo>:<serial>`. Older mxisd kept one file with the bare seed: it is migrated to the
//! directory form with serial `0`, the old file renamed `<path>.backup-before-migration`.
//!
//! Key files are private: we write them 0600 in 0700 directories, tighten looser modes we
//! find (with a warning), and stop with the command to run when we can neither read nor fix.

use super::{b64, random, sign};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const KEY_TYPE: &str = "regular";
const ALGO: &str = "ed25519";

/// One long-term key: its id (`ed25519:0`), the key, and whether it may still be trusted.
pub struct KeyEntry {
    pub id: String,
    pub valid: bool,
    key: SigningKey,
}

impl KeyEntry {
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The public key in unpadded standard base64, as `GET /pubkey/{keyId}` serves it.
    pub fn public_key(&self) -> String {
        b64::encode(self.key.verifying_key().as_bytes())
    }
}

/// All keys of the store, and which one signs.
pub struct SigningKeys {
    keys: Vec<KeyEntry>,
    current: usize,
}

#[derive(Debug)]
pub enum KeyError {
    Io {
        path: PathBuf,
        source: io::Error,
    },
    Format {
        path: PathBuf,
        reason: String,
    },
    /// A key file others may read (or we may not), which we could not fix ourselves.
    Permissions {
        path: PathBuf,
        fix: String,
    },
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::Io { path, source } => write!(f, "key store {}: {source}", path.display()),
            KeyError::Format { path, reason } => {
                write!(f, "key store {}: {reason}", path.display())
            }
            KeyError::Permissions { path, fix } => write!(
                f,
                "key file {} must be readable by this user and no one else; as root, run: {fix}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for KeyError {}

#[derive(Serialize, Deserialize)]
struct CurrentFile {
    #[serde(rename = "type")]
    kind: String,
    algo: String,
    serial: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyFile {
    #[serde(default)]
    version: Value,
    #[serde(default = "default_true")]
    is_valid: bool,
    key: String,
}

fn default_true() -> bool {
    true
}

impl SigningKeys {
    /// Opens the key store at `path`, creating it (with a fresh key) or migrating a legacy
    /// single-file key as needed.
    pub fn load_or_create(path: &Path) -> Result<SigningKeys, KeyError> {
        match fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_new_store(path),
            Err(source) => Err(KeyError::Io {
                path: path.into(),
                source,
            }),
            Ok(meta) if meta.is_file() => migrate_legacy(path),
            Ok(_) => {
                if !path.join("current").exists() && is_empty_dir(path)? {
                    return create_new_store(path);
                }
                load_store(path)
            }
        }
    }

    /// The key that signs this server's answers.
    pub fn current(&self) -> &KeyEntry {
        &self.keys[self.current]
    }

    /// The key with this id (`ed25519:0`), valid or not.
    pub fn find(&self, key_id: &str) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.id == key_id)
    }

    /// Whether `public_key` (base64, any form) is one of our keys that is still valid.
    pub fn is_valid_public_key(&self, public_key: &str) -> bool {
        let Some(bytes) = b64::decode(public_key) else {
            return false;
        };
        self.keys
            .iter()
            .any(|k| k.valid && k.key.verifying_key().as_bytes()[..] == bytes[..])
    }

    /// Signs `value` with the current key as `server_name`.
    pub fn sign(&self, server_name: &str, value: &mut Value) -> Result<(), sign::SignError> {
        let current = self.current();
        sign::sign_json(value, server_name, &current.id, &current.key)
    }
}

fn new_seed(path: &Path) -> Result<String, KeyError> {
    let mut seed = [0u8; 32];
    random::fill(&mut seed).map_err(|source| KeyError::Io {
        path: path.into(),
        source,
    })?;
    Ok(b64::encode(&seed))
}

fn is_empty_dir(path: &Path) -> Result<bool, KeyError> {
    let mut entries = fs::read_dir(path).map_err(|source| KeyError::Io {
        path: path.into(),
        source,
    })?;
    Ok(entries.next().is_none())
}

fn key_file_path(root: &Path, serial: &str) -> PathBuf {
    root.join(KEY_TYPE).join(ALGO).join(serial)
}

/// A new key store at `root` with `seed` as key 0.
fn create_store(root: &Path, seed: &str) -> Result<SigningKeys, KeyError> {
    write_key(root, "0", seed, true)?;
    write_current(root, "0")?;
    load_store(root)
}

/// A new key store at `root`, with a new key.
fn create_new_store(root: &Path) -> Result<SigningKeys, KeyError> {
    let keys = create_store(root, &new_seed(root)?)?;
    log::info!("created signing key {ALGO}:0 in {}", root.display());
    Ok(keys)
}

fn migrate_legacy(path: &Path) -> Result<SigningKeys, KeyError> {
    let seed = read_private(path, path)?.trim().to_owned();
    parse_seed(path, &seed)?;
    let backup = PathBuf::from(format!("{}.backup-before-migration", path.display()));
    if backup.exists() {
        return Err(KeyError::Format {
            path: path.into(),
            reason: format!(
                "is a legacy key file, but {} already exists; move one of them away",
                backup.display()
            ),
        });
    }
    fs::rename(path, &backup).map_err(|source| KeyError::Io {
        path: path.into(),
        source,
    })?;
    let keys = create_store(path, &seed)?;
    log::warn!(
        "migrated legacy key file {} to the key store directory (old file kept as {})",
        path.display(),
        backup.display()
    );
    Ok(keys)
}

fn load_store(root: &Path) -> Result<SigningKeys, KeyError> {
    tighten_dir(root);
    let current_path = root.join("current");
    let current: CurrentFile = parse_json(&current_path, &read_private(&current_path, root)?)?;
    if !current.algo.eq_ignore_ascii_case(ALGO) || !current.kind.eq_ignore_ascii_case(KEY_TYPE) {
        return Err(KeyError::Format {
            path: current_path,
            reason: format!(
                "names a {} {} key; only regular ed25519 keys are supported",
                current.kind, current.algo
            ),
        });
    }
    let mut keys = read_keys(root)?;
    let mut index = keys
        .iter()
        .position(|k| k.id == format!("{ALGO}:{}", current.serial))
        .ok_or_else(|| KeyError::Format {
            path: current_path.clone(),
            reason: format!("names key serial {}, which has no key file", current.serial),
        })?;
    if !keys[index].valid {
        let serial = keys
            .iter()
            .filter_map(|k| serial_number(&k.id))
            .max()
            .unwrap_or(0)
            + 1;
        let serial = serial.to_string();
        write_key(root, &serial, &new_seed(root)?, true)?;
        write_current(root, &serial)?;
        log::warn!(
            "current signing key {} is marked invalid: created {ALGO}:{serial} to sign from now on",
            keys[index].id
        );
        keys = read_keys(root)?;
        index = keys
            .iter()
            .position(|k| k.id == format!("{ALGO}:{serial}"))
            .unwrap_or(0);
    }
    Ok(SigningKeys {
        keys,
        current: index,
    })
}

fn serial_number(id: &str) -> Option<u64> {
    id.strip_prefix("ed25519:")?.parse().ok()
}

fn read_keys(root: &Path) -> Result<Vec<KeyEntry>, KeyError> {
    let dir = root.join(KEY_TYPE).join(ALGO);
    tighten_dir(&root.join(KEY_TYPE));
    tighten_dir(&dir);
    let entries = fs::read_dir(&dir).map_err(|source| KeyError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut keys = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| KeyError::Io {
            path: dir.clone(),
            source,
        })?;
        let path = entry.path();
        let serial = entry.file_name().to_string_lossy().into_owned();
        if !path.is_file() || serial.starts_with('.') {
            continue;
        }
        let file: KeyFile = parse_json(&path, &read_private(&path, root)?)?;
        keys.push(KeyEntry {
            id: format!("{ALGO}:{serial}"),
            valid: file.is_valid,
            key: parse_seed(&path, &file.key)?,
        });
    }
    keys.sort_by_key(|k| serial_number(&k.id));
    Ok(keys)
}

fn parse_seed(path: &Path, seed: &str) -> Result<SigningKey, KeyError> {
    let bytes: [u8; 32] = b64::decode(seed)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| KeyError::Format {
            path: path.into(),
            reason: "key is not a base64 ed25519 seed of 32 bytes".into(),
        })?;
    Ok(SigningKey::from_bytes(&bytes))
}

fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, KeyError> {
    serde_json::from_str(text).map_err(|e| KeyError::Format {
        path: path.into(),
        reason: format!("not the expected JSON: {e}"),
    })
}

/// Reads a key store file after making sure only its owner may read it. When it cannot
/// (a store made by root, say), the fix named is one command for the whole store `root`,
/// so that an operator does not meet its files one restart at a time.
fn read_private(path: &Path, root: &Path) -> Result<String, KeyError> {
    let fix = || KeyError::Permissions {
        path: path.into(),
        fix: format!(
            "chown -R {}:{} '{}' && chmod -R go-rwx '{}'",
            // SAFETY: geteuid and getegid have no preconditions and cannot fail.
            unsafe { libc::geteuid() },
            unsafe { libc::getegid() },
            root.display(),
            root.display()
        ),
    };
    let meta = fs::metadata(path).map_err(|source| KeyError::Io {
        path: path.into(),
        source,
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|_| fix())?;
        log::warn!(
            "key file {} was readable by others: its mode is now 0600",
            path.display()
        );
    }
    fs::read_to_string(path).map_err(|source| match source.kind() {
        io::ErrorKind::PermissionDenied => fix(),
        _ => KeyError::Io {
            path: path.into(),
            source,
        },
    })
}

/// Directories of the key store are 0700; a looser one is tightened, or reported.
fn tighten_dir(path: &Path) {
    let Ok(meta) = fs::metadata(path) else { return };
    if meta.permissions().mode() & 0o077 != 0 {
        match fs::set_permissions(path, fs::Permissions::from_mode(0o700)) {
            Ok(()) => log::warn!(
                "key directory {} was open to others: now 0700",
                path.display()
            ),
            Err(e) => log::warn!("key directory {} is open to others ({e})", path.display()),
        }
    }
}

fn write_key(root: &Path, serial: &str, seed: &str, valid: bool) -> Result<(), KeyError> {
    let file = KeyFile {
        version: Value::String("0".into()),
        is_valid: valid,
        key: seed.into(),
    };
    let text = serde_json::to_string(&file).unwrap_or_default();
    write_private(&key_file_path(root, serial), &text)
}

fn write_current(root: &Path, serial: &str) -> Result<(), KeyError> {
    let current = CurrentFile {
        kind: "Regular".into(),
        algo: ALGO.into(),
        serial: serial.into(),
    };
    let text = serde_json::to_string(&current).unwrap_or_default();
    write_private(&root.join("current"), &text)
}

/// Writes `text` to `path` with mode 0600, through a temporary file and a rename so that a
/// crash never leaves half a key behind.
fn write_private(path: &Path, text: &str) -> Result<(), KeyError> {
    let io_err = |source| KeyError::Io {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err)?;
    file.write_all(text.as_bytes()).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    fs::rename(&tmp, path).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The public key of the all-zero seed (RFC 8032's key derivation; a known value).
    const ZERO_PUBLIC: &str = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik";

    /// A directory of its own under the temporary directory, removed at the end.
    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "mxisd-keys-{name}-{}-{}",
            std::process::id(),
            crate::now_ms()
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn seed(byte: u8) -> String {
        b64::encode(&[byte; 32])
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A directory store written by hand (not by the code under test): `keys` are
    /// (serial, seed, isValid), `current` names one.
    fn write_store(root: &Path, keys: &[(&str, &str, Option<bool>)], current: &str) {
        let dir = root.join("regular/ed25519");
        fs::create_dir_all(&dir).unwrap();
        for (serial, seed, valid) in keys {
            let mut file = json!({"version": "0", "key": seed});
            if let Some(valid) = valid {
                file["isValid"] = json!(valid);
            }
            fs::write(dir.join(serial), file.to_string()).unwrap();
        }
        let current = json!({"type": "Regular", "algo": "ed25519", "serial": current});
        fs::write(root.join("current"), current.to_string()).unwrap();
    }

    fn ids(keys: &SigningKeys) -> Vec<(&str, bool)> {
        keys.keys.iter().map(|k| (k.id.as_str(), k.valid)).collect()
    }

    #[test]
    fn a_store_written_by_hand_loads_with_its_keys() {
        let dir = temp_dir("hand");
        let root = dir.0.join("keys");
        // No isValid: valid (mxisd's default); a subdirectory and a dot file are not keys.
        write_store(
            &root,
            &[("0", &seed(0), None), ("2", &seed(2), Some(false))],
            "0",
        );
        fs::create_dir(root.join("regular/ed25519/old")).unwrap();
        fs::write(root.join("regular/ed25519/.0.swp"), "not json").unwrap();
        let keys = SigningKeys::load_or_create(&root).unwrap();
        assert_eq!(ids(&keys), [("ed25519:0", true), ("ed25519:2", false)]);
        assert_eq!(keys.current().id, "ed25519:0");
        assert_eq!(keys.current().public_key(), ZERO_PUBLIC);
        assert_eq!(
            keys.find("ed25519:2").map(|k| k.public_key()),
            Some(b64::encode(
                SigningKey::from_bytes(&[2; 32]).verifying_key().as_bytes()
            ))
        );
        assert!(keys.find("ed25519:1").is_none());
        assert!(keys.is_valid_public_key(ZERO_PUBLIC));
        // Any base64 form of it.
        assert!(keys.is_valid_public_key(&format!("{ZERO_PUBLIC}=")));
        let invalid = keys.find("ed25519:2").unwrap().public_key();
        assert!(!keys.is_valid_public_key(&invalid), "marked invalid");
        let unknown = b64::encode(SigningKey::from_bytes(&[7; 32]).verifying_key().as_bytes());
        assert!(!keys.is_valid_public_key(&unknown));
        assert!(!keys.is_valid_public_key("not base64!"));
    }

    #[test]
    fn signs_with_the_current_key() {
        let dir = temp_dir("sign");
        let root = dir.0.join("keys");
        write_store(
            &root,
            &[("0", &seed(0), Some(true)), ("1", &seed(1), Some(true))],
            "1",
        );
        let keys = SigningKeys::load_or_create(&root).unwrap();
        let mut value = json!({"mxid": "@a:b.test"});
        keys.sign("id.test", &mut value).unwrap();
        let public = SigningKey::from_bytes(&[1; 32]).verifying_key();
        assert!(sign::verify_json(&value, "id.test", "ed25519:1", &public).is_ok());
        assert_eq!(keys.current().signing_key().verifying_key(), public);
    }

    #[test]
    fn a_new_store_is_created_private_and_loads_again() {
        let dir = temp_dir("new");
        // Not there at all, and an empty directory: both get a new key 0.
        let missing = dir.0.join("missing");
        let empty = dir.0.join("empty");
        fs::create_dir(&empty).unwrap();
        for root in [&missing, &empty] {
            let keys = SigningKeys::load_or_create(root).unwrap();
            assert_eq!(ids(&keys), [("ed25519:0", true)]);
            let public = keys.current().public_key();
            assert_ne!(public, ZERO_PUBLIC);
            let file = root.join("regular/ed25519/0");
            assert_eq!(mode(&file), 0o600);
            assert_eq!(mode(&root.join("current")), 0o600);
            assert_eq!(mode(&root.join("regular/ed25519")), 0o700);
            let written: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
            assert_eq!(written["isValid"], json!(true));
            let again = SigningKeys::load_or_create(root).unwrap();
            assert_eq!(again.current().id, "ed25519:0");
            assert_eq!(again.current().public_key(), public);
        }
    }

    #[test]
    fn a_legacy_key_file_is_migrated_once() {
        let dir = temp_dir("legacy");
        let root = dir.0.join("keys");
        fs::write(&root, format!("{}\n", seed(0))).unwrap();
        let keys = SigningKeys::load_or_create(&root).unwrap();
        assert_eq!(ids(&keys), [("ed25519:0", true)]);
        assert_eq!(keys.current().public_key(), ZERO_PUBLIC);
        let backup = dir.0.join("keys.backup-before-migration");
        assert_eq!(
            fs::read_to_string(&backup).unwrap(),
            format!("{}\n", seed(0))
        );
        assert!(root.join("current").is_file());
        // A second legacy file with a backup already there: refused, nothing moved.
        let second = dir.0.join("second");
        fs::write(&second, seed(1)).unwrap();
        fs::write(dir.0.join("second.backup-before-migration"), "x").unwrap();
        let err = SigningKeys::load_or_create(&second).err().unwrap();
        assert!(
            err.to_string()
                .contains("already exists; move one of them away"),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&second).unwrap(), seed(1));
    }

    #[test]
    fn an_invalid_current_key_is_replaced_by_the_next_serial() {
        let dir = temp_dir("invalid");
        let root = dir.0.join("keys");
        write_store(
            &root,
            &[("0", &seed(0), Some(true)), ("3", &seed(3), Some(false))],
            "3",
        );
        let keys = SigningKeys::load_or_create(&root).unwrap();
        assert_eq!(
            ids(&keys),
            [
                ("ed25519:0", true),
                ("ed25519:3", false),
                ("ed25519:4", true)
            ]
        );
        assert_eq!(keys.current().id, "ed25519:4");
        let current: Value =
            serde_json::from_str(&fs::read_to_string(root.join("current")).unwrap()).unwrap();
        assert_eq!(current["serial"], json!("4"));
        // The only key, invalid: serial 1 follows.
        let dir = temp_dir("invalid-only");
        let root = dir.0.join("keys");
        write_store(&root, &[("0", &seed(0), Some(false))], "0");
        let keys = SigningKeys::load_or_create(&root).unwrap();
        assert_eq!(ids(&keys), [("ed25519:0", false), ("ed25519:1", true)]);
        assert_eq!(keys.current().id, "ed25519:1");
        assert_ne!(keys.current().public_key(), ZERO_PUBLIC);
    }

    #[test]
    fn loose_modes_are_tightened_and_tight_ones_left() {
        let dir = temp_dir("modes");
        let root = dir.0.join("keys");
        write_store(&root, &[("0", &seed(0), Some(true))], "0");
        let file = root.join("regular/ed25519/0");
        set_mode(&file, 0o644);
        set_mode(&root.join("current"), 0o400);
        set_mode(&root.join("regular"), 0o755);
        set_mode(&root.join("regular/ed25519"), 0o500);
        set_mode(&root, 0o750);
        SigningKeys::load_or_create(&root).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&root.join("current")), 0o400, "already private");
        assert_eq!(mode(&root.join("regular")), 0o700);
        assert_eq!(
            mode(&root.join("regular/ed25519")),
            0o500,
            "already private"
        );
        assert_eq!(mode(&root), 0o700);
    }

    #[test]
    fn broken_stores_are_refused_naming_the_file() {
        let dir = temp_dir("broken");
        // Files in it but no `current`: not a store to replace.
        let root = dir.0.join("no-current");
        write_store(&root, &[("0", &seed(0), Some(true))], "0");
        fs::remove_file(root.join("current")).unwrap();
        let err = SigningKeys::load_or_create(&root).err().unwrap();
        assert!(matches!(&err, KeyError::Io { path, .. } if *path == root.join("current")));
        assert!(!root.join("regular/ed25519/1").exists());
        // Under a file: the error names the path asked for, not a key file.
        let file = dir.0.join("file");
        fs::write(&file, "").unwrap();
        let under = file.join("keys");
        let err = SigningKeys::load_or_create(&under).err().unwrap();
        assert!(
            matches!(&err, KeyError::Io { path, .. } if *path == under),
            "{err}"
        );
        // Another type of key.
        let root = dir.0.join("other-type");
        write_store(&root, &[("0", &seed(0), Some(true))], "0");
        fs::write(
            root.join("current"),
            r#"{"type":"Ephemeral","algo":"ed25519","serial":"0"}"#,
        )
        .unwrap();
        let err = SigningKeys::load_or_create(&root).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "key store {}: names a Ephemeral ed25519 key; only regular ed25519 keys are supported",
                root.join("current").display()
            )
        );
        // `current` names a serial without a file; a seed that is not 32 bytes.
        let root = dir.0.join("no-file");
        write_store(&root, &[("0", &seed(0), Some(true))], "5");
        let err = SigningKeys::load_or_create(&root).err().unwrap();
        assert!(
            err.to_string()
                .ends_with("names key serial 5, which has no key file"),
            "{err}"
        );
        let root = dir.0.join("short-seed");
        write_store(&root, &[("0", "AAAA", Some(true))], "0");
        let err = SigningKeys::load_or_create(&root).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "key store {}: key is not a base64 ed25519 seed of 32 bytes",
                root.join("regular/ed25519/0").display()
            )
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        let path = PathBuf::from("/k");
        let io = KeyError::Io {
            path: path.clone(),
            source: io::Error::other("boom"),
        };
        assert_eq!(io.to_string(), "key store /k: boom");
        let format = KeyError::Format {
            path: path.clone(),
            reason: "bad".into(),
        };
        assert_eq!(format.to_string(), "key store /k: bad");
        let permissions = KeyError::Permissions {
            path,
            fix: "chmod".into(),
        };
        assert_eq!(
            permissions.to_string(),
            "key file /k must be readable by this user and no one else; as root, run: chmod"
        );
    }
}
