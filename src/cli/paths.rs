//! `check-config`, always: can the user who will run the service read and write the key
//! store (`key.path`) and the SQLite state (`storage.provider.sqlite.database`)? Run as
//! root, that user is `mxisd` when it exists (the package's service user), so a key store
//! left owned by root is found before a start fails on it.
//!
//! Decided from the mode bits, owners and groups on disk (not `access(2)`, which answers
//! for the caller only); ACLs and the unit's sandbox are not looked at.

use crate::config::{Config, StorageConfig};
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const READ: u32 = 4;
const WRITE: u32 = 2;
const SEARCH: u32 = 1;

/// The user whose rights are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub name: String,
    pub uid: u32,
    pub gids: Vec<u32>,
    /// Why this user (for the report).
    pub why: String,
    /// Whether this is the service's user for sure (`mxisd`, found as root), rather than
    /// whoever runs the command.
    pub service: bool,
}

impl Who {
    /// As root: the `mxisd` user if it exists, else root; otherwise the caller.
    pub fn service_user() -> Who {
        // SAFETY: these calls have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
        let groups = fs::read_to_string("/etc/group").unwrap_or_default();
        if uid == 0 {
            if let Some((uid, gid)) = user_ids(&passwd, "mxisd") {
                return Who {
                    name: "mxisd".into(),
                    uid,
                    gids: group_ids(&groups, "mxisd", gid),
                    why: "run as root: checked for the user mxisd, which runs the service".into(),
                    service: true,
                };
            }
            return Who {
                name: "root".into(),
                uid: 0,
                gids: vec![0],
                why: "run as root and there is no mxisd user: checked for root".into(),
                service: false,
            };
        }
        let name = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.get(2).and_then(|u| u.parse::<u32>().ok()) == Some(uid))
            .and_then(|f| f.first().map(|n| n.to_string()))
            .unwrap_or_else(|| uid.to_string());
        Who {
            gids: group_ids(&groups, &name, gid),
            why: format!("checked for the user running this command, {name}"),
            name,
            uid,
            service: false,
        }
    }

    /// Whether this user has every right of `want` (`READ | WRITE | SEARCH` bits) on `meta`.
    fn may(&self, meta: &Metadata, want: u32) -> bool {
        if self.uid == 0 {
            return true;
        }
        let mode = meta.mode();
        let bits = if meta.uid() == self.uid {
            mode >> 6
        } else if self.gids.contains(&meta.gid()) {
            mode >> 3
        } else {
            mode
        } & 7;
        bits & want == want
    }
}

/// `(uid, gid)` of `name` in the text of `/etc/passwd`.
fn user_ids(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.first() != Some(&name) {
            return None;
        }
        Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
    })
}

/// `primary` and the groups of `/etc/group` that list `name`.
fn group_ids(groups: &str, name: &str, primary: u32) -> Vec<u32> {
    let mut gids = vec![primary];
    for line in groups.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let member = f
            .get(3)
            .is_some_and(|m| m.split(',').any(|u| u.trim() == name));
        if let (true, Some(Ok(gid))) = (member, f.get(2).map(|g| g.parse::<u32>())) {
            gids.push(gid);
        }
    }
    gids
}

/// One path checked: the key naming it, the path, and what is wrong (empty: fine).
#[derive(Debug)]
pub struct PathCheck {
    pub key: &'static str,
    pub path: PathBuf,
    pub problems: Vec<String>,
    /// Whether the problems stop the start for sure: always for a path that exists; for
    /// one still to be created, only when checked for the service's own user (the caller
    /// may be checking a file whose service runs as someone else).
    pub fatal: bool,
}

/// The key store and, on SQLite, the state database, for `who`.
pub fn check(config: &Config, who: &Who) -> Vec<PathCheck> {
    // A read-only mount stops anyone; a missing path, only the user who cannot create it.
    let fatal = |path: &Path, problems: &[String]| {
        who.service || absolute(path).exists() || problems.iter().any(|p| p.contains(READ_ONLY))
    };
    let problems = key_store(&absolute(&config.key.path), who);
    let mut out = vec![PathCheck {
        key: "key.path",
        path: config.key.path.clone(),
        fatal: fatal(&config.key.path, &problems),
        problems,
    }];
    if let StorageConfig::Sqlite { database } = &config.storage {
        let problems = database_file(&absolute(database), who);
        out.push(PathCheck {
            key: "storage.provider.sqlite.database",
            path: database.clone(),
            fatal: fatal(database, &problems),
            problems,
        });
    }
    out
}

/// The single command that gives `who` what the failed paths need, if it can be said:
/// `chown -R` of what exists (the key store; the database's directory, where its lock
/// file and journal live), `install -d` of the directories the start would create.
pub fn fix(checks: &[PathCheck], who: &Who) -> Option<String> {
    if who.uid == 0 {
        return None;
    }
    let owner = if who.service {
        format!("{0}:{0}", who.name)
    } else {
        format!("{}:", who.name)
    };
    let mut chown = Vec::new();
    let mut create = Vec::new();
    for c in checks.iter().filter(|c| !c.problems.is_empty()) {
        let p = absolute(&c.path);
        let dir = if c.key == "key.path" {
            p.clone()
        } else {
            p.parent().map_or(p.clone(), Path::to_path_buf)
        };
        let quoted = format!("'{}'", dir.display());
        if dir.exists() {
            chown.push(quoted);
        } else {
            create.push(quoted);
        }
    }
    let mut commands = Vec::new();
    if !create.is_empty() {
        let (user, group) = owner.split_once(':').unwrap_or((&who.name, ""));
        let group = if group.is_empty() {
            String::new()
        } else {
            format!(" -g {group}")
        };
        commands.push(format!(
            "install -d -m 700 -o {user}{group} {}",
            create.join(" ")
        ));
    }
    if !chown.is_empty() {
        commands.push(format!("chown -R {owner} {}", chown.join(" ")));
    }
    (!commands.is_empty()).then(|| commands.join(" && "))
}

fn absolute(path: &Path) -> PathBuf {
    std::env::current_dir()
        .map(|d| d.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// `path` if it exists, else its nearest existing ancestor.
fn existing(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| p.exists())
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

/// Every directory above `path` must let `who` through.
fn reachable(path: &Path, who: &Who) -> Vec<String> {
    let mut problems = Vec::new();
    for dir in path.ancestors().skip(1) {
        if let Ok(meta) = fs::metadata(dir) {
            if !who.may(&meta, SEARCH) {
                problems.push(format!("{} cannot enter {}", who.name, dir.display()));
            }
        }
    }
    problems.reverse();
    problems.truncate(1);
    problems
}

/// A missing `path` will be created: its nearest existing directory must be writable.
fn creatable(path: &Path, who: &Who, what: &str) -> Vec<String> {
    let parent = existing(path);
    match fs::metadata(&parent) {
        Ok(meta) if meta.is_dir() && who.may(&meta, WRITE | SEARCH) => Vec::new(),
        Ok(meta) if meta.is_dir() => vec![format!(
            "{} does not exist and {} cannot create {what} in {} (owner uid {}, mode {:o})",
            path.display(),
            who.name,
            parent.display(),
            meta.uid(),
            meta.mode() & 0o7777
        )],
        _ => vec![format!(
            "{} does not exist and {} is not a directory",
            path.display(),
            parent.display()
        )],
    }
}

/// The packaged unit's one writable directory (`ReadWritePaths=`, under `ProtectSystem=strict`).
const UNIT_WRITABLE: &str = "/var/lib/mxisd";
const READ_ONLY: &str = "read-only file system";
/// Where the package installs its unit.
const UNIT_FILES: [&str; 2] = [
    "/lib/systemd/system/mxisd.service",
    "/usr/lib/systemd/system/mxisd.service",
];

/// Whether `path` is on a file system mounted read-only here (as the unit's sandbox
/// mounts everything but its `ReadWritePaths=` when this runs as its `ExecStartPre=`).
fn read_only(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid place for the answer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_flag & libc::ST_RDONLY != 0
}

/// The problem of a directory mxisd must write in that is mounted read-only here.
fn writable_mount(dir: &Path) -> Option<String> {
    let dir = existing(dir);
    read_only(&dir).then(|| {
        format!(
            "{} is on a {READ_ONLY} here; under the packaged systemd unit, which lets mxisd write only {UNIT_WRITABLE}, add a drop-in (systemctl edit mxisd) with [Service] ReadWritePaths={}",
            dir.display(),
            dir.display()
        )
    })
}

/// For the paths outside the packaged unit's writable directory, when the unit is
/// installed: the drop-in they need (a note, not a failure: the unit may have one).
pub fn sandbox_notes(checks: &[PathCheck]) -> Vec<String> {
    if !UNIT_FILES.iter().any(|f| Path::new(f).exists()) {
        return Vec::new();
    }
    checks
        .iter()
        .filter_map(|c| {
            let p = absolute(&c.path);
            let dir = if c.key == "key.path" {
                p
            } else {
                p.parent()?.to_path_buf()
            };
            (!dir.starts_with(UNIT_WRITABLE)).then(|| {
                format!(
                    "{} {} is outside {UNIT_WRITABLE}, the only directory the packaged unit lets mxisd write: unless a drop-in already does, add one (systemctl edit mxisd) with [Service] ReadWritePaths={}",
                    c.key,
                    c.path.display(),
                    dir.display()
                )
            })
        })
        .collect()
}

fn key_store(path: &Path, who: &Who) -> Vec<String> {
    let mut problems = reachable(path, who);
    problems.extend(writable_mount(path));
    match fs::metadata(path) {
        Err(_) => problems.extend(creatable(path, who, "the key store")),
        Ok(meta) if meta.is_file() => {
            // A legacy key file: read, then moved aside for the directory form.
            if !who.may(&meta, READ) {
                problems.push(format!("{} cannot read {}", who.name, path.display()));
            }
            if let Some(dir) = path.parent().and_then(|d| fs::metadata(d).ok()) {
                if !who.may(&dir, WRITE | SEARCH) {
                    problems.push(format!(
                        "{} is a legacy key file that the start migrates: {} cannot write in its directory",
                        path.display(),
                        who.name
                    ));
                }
            }
        }
        Ok(_) => walk_keys(path, who, &mut problems),
    }
    problems
}

/// Every directory of the key store enterable and readable, every file readable, and
/// owned by `who` where the start would tighten its mode.
fn walk_keys(dir: &Path, who: &Who, problems: &mut Vec<String>) {
    let Ok(meta) = fs::metadata(dir) else { return };
    if !who.may(&meta, READ | SEARCH) {
        problems.push(format!("{} cannot read {}", who.name, dir.display()));
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk_keys(&path, who, problems);
        } else if !who.may(&meta, READ) {
            problems.push(format!(
                "{} cannot read {} (owner uid {}, mode {:o})",
                who.name,
                path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ));
        } else if meta.mode() & 0o077 != 0 && meta.uid() != who.uid && who.uid != 0 {
            problems.push(format!(
                "{} is readable by others and not owned by {}: the start cannot make it 0600",
                path.display(),
                who.name
            ));
        }
    }
}

fn database_file(path: &Path, who: &Who) -> Vec<String> {
    let mut problems = reachable(path, who);
    problems.extend(writable_mount(path.parent().unwrap_or(Path::new("/"))));
    match fs::metadata(path) {
        // The start makes the file, and its directories.
        Err(_) => problems.extend(creatable(path, who, "the database")),
        Ok(meta) => {
            if !who.may(&meta, READ | WRITE) {
                problems.push(format!(
                    "{} cannot read and write {} (owner uid {}, mode {:o})",
                    who.name,
                    path.display(),
                    meta.uid(),
                    meta.mode() & 0o7777
                ));
            }
            // The lock file and SQLite's write-ahead log are made beside it.
            let dir = path.parent().unwrap_or(Path::new("/"));
            if let Ok(d) = fs::metadata(dir) {
                if !who.may(&d, WRITE | SEARCH) {
                    problems.push(format!(
                        "{} cannot create files in {} (its lock file and write-ahead log)",
                        who.name,
                        dir.display()
                    ));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups_are_read_from_the_files() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\nmxisd:x:998:997::/var/lib/mxisd:/usr/sbin/nologin\n";
        assert_eq!(user_ids(passwd, "mxisd"), Some((998, 997)));
        assert_eq!(user_ids(passwd, "nobody"), None);
        let groups = "root:x:0:\nssl-cert:x:110:mxisd,postgres\nother:x:5:postgres\n";
        assert_eq!(group_ids(groups, "mxisd", 997), vec![997, 110]);
    }

    #[test]
    fn rights_come_from_owner_group_or_others_bits() {
        let dir = std::env::temp_dir().join(format!("mxisd-paths-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        fs::write(&file, "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        let meta = fs::metadata(&file).unwrap();
        let owner = Who {
            name: "o".into(),
            uid: meta.uid(),
            gids: vec![],
            why: String::new(),
            service: false,
        };
        let group = Who {
            name: "g".into(),
            uid: meta.uid() + 1,
            gids: vec![meta.gid()],
            why: String::new(),
            service: false,
        };
        let other = Who {
            name: "x".into(),
            uid: meta.uid() + 1,
            gids: vec![meta.gid() + 1],
            why: String::new(),
            service: false,
        };
        assert!(owner.may(&meta, READ | WRITE));
        assert!(group.may(&meta, READ) && !group.may(&meta, WRITE));
        assert!(!other.may(&meta, READ));
        let _ = fs::remove_dir_all(&dir);
    }
}
