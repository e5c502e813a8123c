//! The hosts file (`/etc/hosts`), read by us: names an air-gapped site writes there must
//! resolve for outbound calls as they do for every other program on the host, and asking
//! the system's `getaddrinfo` from a worker would have no deadline.
//!
//! The file is parsed once, then read again when its modification time, size or inode
//! changes, which is looked at no more than once a second. `localhost` and its subdomains
//! are loopback without looking anywhere (RFC 6761, 6.3).
//!
//! Its path is `/etc/hosts`, or what the environment variable [`HOSTS_FILE_ENV`] says at
//! start (for tests: there is no configuration key, the operator's file is the system's).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// The system's hosts file.
pub const SYSTEM_HOSTS_FILE: &str = "/etc/hosts";
/// Read at start: another hosts file (tests).
pub const HOSTS_FILE_ENV: &str = "MXISD_HOSTS_FILE";
/// How often, at most, the file is looked at for changes.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// The hosts file: its path and what was last read from it.
#[derive(Debug)]
pub struct HostsFile {
    path: PathBuf,
    /// How often, at most, the file is looked at for changes.
    recheck: Duration,
    read: Mutex<Read>,
}

/// What the file held when last read, and how to tell that it changed.
#[derive(Debug, Default)]
struct Read {
    /// (modification time, size, inode) when read; `None`: missing or unreadable.
    stamp: Option<(SystemTime, u64, u64)>,
    /// When the stamp was last compared with the file.
    checked: Option<Instant>,
    /// Name (lower case, no final dot) → its addresses, in the file's order.
    names: HashMap<String, Vec<IpAddr>>,
}

/// The loopback addresses of `name` if it is `localhost` or under it (RFC 6761: such names
/// are never sent to a DNS server, nor looked up anywhere else).
pub fn special(name: &str) -> Option<Vec<IpAddr>> {
    let name = normalise(name);
    (name == "localhost" || name.ends_with(".localhost")).then(|| {
        vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]
    })
}

impl HostsFile {
    /// The file at `path`, read at the first lookup.
    pub fn at(path: impl Into<PathBuf>) -> HostsFile {
        HostsFile {
            path: path.into(),
            recheck: RECHECK_EVERY,
            read: Mutex::new(Read::default()),
        }
    }

    /// The system's hosts file, or the one [`HOSTS_FILE_ENV`] names.
    pub fn system() -> HostsFile {
        match std::env::var_os(HOSTS_FILE_ENV) {
            Some(path) if !path.is_empty() => HostsFile::at(path),
            _ => HostsFile::at(SYSTEM_HOSTS_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The addresses the file gives `name`, if it names it.
    pub fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        let mut read = crate::lock(&self.read);
        self.refresh(&mut read);
        read.names.get(&normalise(name)).cloned()
    }

    /// Reads the file again if it changed since it was read (looked at once a second).
    fn refresh(&self, read: &mut Read) {
        let now = Instant::now();
        if read
            .checked
            .is_some_and(|at| now.duration_since(at) < self.recheck)
        {
            return;
        }
        read.checked = Some(now);
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len(), m.ino())));
        if stamp.is_some() && stamp == read.stamp {
            return;
        }
        read.names = match std::fs::read(&self.path) {
            Ok(bytes) => parse(&String::from_utf8_lossy(&bytes)),
            Err(e) => {
                // Logged when it starts failing, not at every lookup.
                if read.stamp.is_some() || stamp.is_some() {
                    log::warn!("hosts file {}: {e}", self.path.display());
                }
                HashMap::new()
            }
        };
        read.stamp = stamp;
    }
}

/// A name as compared: lower case, without the final dot of an absolute name.
fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The hosts file format (hosts(5)): an address, then its canonical name and aliases,
/// separated by blanks; `#` starts a comment. A line whose first field is not an address
/// (an IPv6 address with a zone, say) or that has no name is skipped.
pub fn parse(text: &str) -> HashMap<String, Vec<IpAddr>> {
    let mut names: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(ip) = fields.next().and_then(|f| f.parse::<IpAddr>().ok()) else {
            continue;
        };
        for name in fields.map(normalise).filter(|n| valid_name(n)) {
            let ips = names.entry(name).or_default();
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    names
}

/// Letters, digits, `-`, `_` and dots: anything else on a line is not a host name.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_format_of_hosts_5() {
        let names = parse(
            "# The hosts file\n\
             127.0.0.1\tlocalhost\n\
             10.20.0.5   hs.corp.example   hs  # the homeserver\n\
             \n\
             10.20.0.6 HS2.Corp.Example. alias-two\n\
             fd00::5 hs.corp.example\n\
             ::1 ip6-localhost ip6-loopback\n\
             10.20.0.7\n\
             not-an-address some.name\n\
             fe80::1%eth0 zoned.example\n\
             10.20.0.300 bad.example\n\
             # 10.0.0.9 commented.example\n\
             10.20.0.8 wei/rd.example ok.example\n\
             10.20.0.5 hs.corp.example\n",
        );
        assert_eq!(
            names.get("hs.corp.example"),
            Some(&vec![ip("10.20.0.5"), ip("fd00::5")]),
            "aliases and IPv6 add up, a repeated line adds nothing"
        );
        assert_eq!(names.get("hs"), Some(&vec![ip("10.20.0.5")]));
        assert_eq!(names.get("hs2.corp.example"), Some(&vec![ip("10.20.0.6")]));
        assert_eq!(names.get("alias-two"), Some(&vec![ip("10.20.0.6")]));
        assert_eq!(names.get("ip6-loopback"), Some(&vec![ip("::1")]));
        assert_eq!(names.get("ok.example"), Some(&vec![ip("10.20.0.8")]));
        for absent in [
            "some.name",
            "zoned.example",
            "bad.example",
            "commented.example",
            "wei/rd.example",
            "the",
            "homeserver",
        ] {
            assert_eq!(names.get(absent), None, "{absent}");
        }
        assert_eq!(names.len(), 8, "{names:?}");
    }

    #[test]
    fn localhost_is_loopback_without_looking() {
        let both = Some(vec![ip("127.0.0.1"), ip("::1")]);
        for name in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "hs.localhost",
            "a.b.localhost",
        ] {
            assert_eq!(special(name), both, "{name}");
        }
        for name in [
            "localhost.example",
            "notlocalhost",
            "localhostx",
            "example.org",
        ] {
            assert_eq!(special(name), None, "{name}");
        }
    }

    /// A fresh directory for a test's files.
    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "mxisd-hosts-{test}-{}-{}",
            std::process::id(),
            crate::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_changed_file_is_read_again_a_missing_one_is_empty() {
        let dir = scratch("reload");
        let path = dir.join("hosts");
        std::fs::write(&path, "10.0.0.1 one.example\n").unwrap();
        // Looked at on every lookup here, to see what each change does.
        let hosts = HostsFile {
            recheck: Duration::ZERO,
            ..HostsFile::at(&path)
        };
        assert_eq!(hosts.lookup("One.Example."), Some(vec![ip("10.0.0.1")]));
        // Another size and inode: a new file renamed over it, as editors and tools do.
        let new = dir.join("hosts.new");
        std::fs::write(&new, "10.0.0.2 one.example\n10.0.0.3 two.example\n").unwrap();
        std::fs::rename(&new, &path).unwrap();
        assert_eq!(hosts.lookup("one.example"), Some(vec![ip("10.0.0.2")]));
        assert_eq!(hosts.lookup("two.example"), Some(vec![ip("10.0.0.3")]));
        // The same size, written in place: the modification time tells.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "10.0.0.4 one.example\n10.0.0.5 two.example\n").unwrap();
        assert_eq!(hosts.lookup("one.example"), Some(vec![ip("10.0.0.4")]));
        // Gone: nothing; back again: read.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(hosts.lookup("one.example"), None);
        std::fs::write(&path, "10.0.0.6 one.example\n").unwrap();
        assert_eq!(hosts.lookup("one.example"), Some(vec![ip("10.0.0.6")]));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            HostsFile::at("/nonexistent/hosts").lookup("one.example"),
            None
        );
    }

    #[test]
    fn the_file_is_not_looked_at_again_within_the_interval() {
        let dir = scratch("interval");
        let path = dir.join("hosts");
        std::fs::write(&path, "10.0.0.1 one.example\n").unwrap();
        let hosts = HostsFile {
            recheck: Duration::from_secs(3600),
            ..HostsFile::at(&path)
        };
        assert_eq!(hosts.lookup("one.example"), Some(vec![ip("10.0.0.1")]));
        std::fs::write(&path, "10.0.0.2 one.example\n10.0.0.3 two.example\n").unwrap();
        assert_eq!(hosts.lookup("one.example"), Some(vec![ip("10.0.0.1")]));
        assert_eq!(hosts.lookup("two.example"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
