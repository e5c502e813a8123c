//! Which identity server answers for an e-mail domain (mxisd's DNS lookup step):
//! SRV `_matrix-identity._tcp.<domain>`, its targets in RFC 2782 order (lowest priority
//! first; within a priority, a weighted random draw), each as `https://<target>:<port>`;
//! with no such record, `https://<domain>`. Answers are kept for their DNS TTL (a domain
//! without records for [`NO_RECORD_TTL`]; a DNS that failed or ran out of time is asked
//! again next time). A target that is not a host name (RFC 2782's `.`: no service; bytes
//! that would make a URL of their own) or port 0 is left out.
//!
//! Our own `matrix.domain` and phone numbers are not discovered: the caller never asks.

use super::client::Client;
use super::dns::SrvRecord;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The SRV service of identity servers.
pub const SERVICE: &str = "_matrix-identity._tcp";
/// How long a domain without SRV records (or whose DNS failed) is not asked again.
pub const NO_RECORD_TTL: Duration = Duration::from_secs(60);
/// Longest a record is kept, whatever its TTL says.
const MAX_TTL: Duration = Duration::from_secs(3600);
/// Domains kept at most; beyond, expired ones go, then all.
const DOMAINS_MAX: usize = 10_000;

/// Discovered identity servers by domain, with when each answer expires.
#[derive(Default)]
pub struct IdentityDiscovery {
    cache: Mutex<HashMap<String, (Vec<SrvRecord>, Instant)>>,
}

impl IdentityDiscovery {
    /// The base URLs to ask for addresses at `domain` (lower-cased), in order; asks the DNS
    /// within `timeout` unless a cached answer is still fresh.
    pub fn servers(&self, client: &Client, domain: &str, timeout: Duration) -> Vec<String> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if !is_domain(&domain) {
            return Vec::new();
        }
        let records = match self.cached(&domain) {
            Some(records) => records,
            None => self.ask(client, &domain, timeout),
        };
        if records.is_empty() {
            return vec![format!("https://{domain}")];
        }
        rfc2782_order(records, &mut seed())
            .into_iter()
            .filter(|r| r.port != 0 && is_domain(r.target.trim_end_matches('.')))
            .map(|r| base_url(r.target.trim_end_matches('.'), r.port))
            .collect()
    }

    fn cached(&self, domain: &str) -> Option<Vec<SrvRecord>> {
        let cache = crate::lock(&self.cache);
        cache
            .get(domain)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(records, _)| records.clone())
    }

    fn ask(&self, client: &Client, domain: &str, timeout: Duration) -> Vec<SrvRecord> {
        // Two attempts per query, each half of the time allowed.
        let dns = client.dns().with_timeout(timeout / 2);
        let (records, ttl) = match dns.srv_records(SERVICE, domain) {
            Ok(records) if records.is_empty() => (records, NO_RECORD_TTL),
            Ok(records) => {
                let ttl = records.iter().map(|r| r.ttl).min().unwrap_or(NO_RECORD_TTL);
                (records, ttl.min(MAX_TTL))
            }
            Err(why) => {
                // Not kept: a timeout may be the little time left of one request.
                log::info!("SRV {SERVICE}.{domain}: {why}; asking https://{domain}");
                return Vec::new();
            }
        };
        let mut cache = crate::lock(&self.cache);
        if cache.len() >= DOMAINS_MAX {
            let now = Instant::now();
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= DOMAINS_MAX {
                cache.clear();
            }
        }
        cache.insert(domain.to_owned(), (records.clone(), Instant::now() + ttl));
        records
    }
}

/// `https://<target>[:port]`: the target is the TLS name (the certificate the identity
/// server presents is its own host's).
fn base_url(target: &str, port: u16) -> String {
    if port == 443 {
        format!("https://{target}")
    } else {
        format!("https://{target}:{port}")
    }
}

/// A host name as DNS writes it: what an e-mail's domain must be before it is asked.
fn is_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A cheap varying seed for the weighted draw (not a secret: it only spreads load).
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos) | 1
}

/// RFC 2782's order: priorities ascending; within one, repeatedly draw a record with
/// probability proportional to its weight (zero-weight records first in the running sum,
/// so they are drawn rarely but still drawn).
fn rfc2782_order(mut records: Vec<SrvRecord>, state: &mut u64) -> Vec<SrvRecord> {
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut ordered = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let end = records
            .iter()
            .position(|r| r.priority != priority)
            .unwrap_or(records.len());
        let mut group: Vec<SrvRecord> = records.drain(..end).collect();
        while !group.is_empty() {
            let total: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            let pick = if total == 0 {
                0
            } else {
                next(state) % (total + 1)
            };
            let mut sum = 0;
            let index = group
                .iter()
                .position(|r| {
                    sum += u64::from(r.weight);
                    sum >= pick
                })
                .unwrap_or(0);
            ordered.push(group.remove(index));
        }
    }
    ordered
}

/// xorshift64: enough randomness for spreading load across equal-priority servers.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port: 443,
            target: target.into(),
            ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn lower_priorities_come_first_whatever_the_draw() {
        for seed in 1..200u64 {
            let mut state = seed;
            let order = rfc2782_order(
                vec![
                    srv(20, 5, "c"),
                    srv(10, 0, "a"),
                    srv(10, 60, "b"),
                    srv(30, 0, "d"),
                ],
                &mut state,
            );
            let names: Vec<&str> = order.iter().map(|r| r.target.as_str()).collect();
            assert_eq!(names.len(), 4);
            assert!(["a", "b"].contains(&names[0]) && ["a", "b"].contains(&names[1]));
            assert_eq!(&names[2..], ["c", "d"]);
        }
    }

    #[test]
    fn weights_share_the_first_place_in_proportion() {
        let mut heavy_first = 0;
        let mut state = 7;
        for _ in 0..1000 {
            let order = rfc2782_order(vec![srv(10, 1, "light"), srv(10, 9, "heavy")], &mut state);
            if order[0].target == "heavy" {
                heavy_first += 1;
            }
        }
        // 9 of 10 expected; a wide margin keeps the test about proportion, not luck.
        assert!((800..=980).contains(&heavy_first), "{heavy_first}");
    }

    #[test]
    fn base_urls_name_the_target_and_a_port_other_than_443() {
        assert_eq!(base_url("id.example.org", 443), "https://id.example.org");
        assert_eq!(
            base_url("id.example.org", 8443),
            "https://id.example.org:8443"
        );
    }

    #[test]
    fn only_host_names_are_asked() {
        assert!(is_domain("example.org"));
        assert!(is_domain("mail.example-1.org"));
        for bad in [
            "",
            "localhost",
            "a..b",
            "-a.org",
            "a_b.org",
            "1.2.3.4]",
            "[::1]",
        ] {
            assert!(!is_domain(bad), "{bad}");
        }
    }
}
