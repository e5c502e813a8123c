//! `lookup` and `hashing`: bulk lookups, their size, phone number regions, the peers that
//! push their hashes to us and we push ours to (MSC4004, `lookup.peers`), and the v2 hashed
//! lookups (algorithms, pepper and its rotation, index refresh).

use super::check::Resolver;
use crate::cidr::Cidr;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct LookupConfig {
    pub bulk_enabled: bool,
    /// Most addresses in one bulk or v2 lookup.
    pub max_addresses: usize,
    /// Region of phone numbers written without a country code in stores (`GB`, `FR`).
    pub default_region: Option<phonenumber::country::Id>,
    /// `lookup.recursive`: whether and for whom lookups go on to other identity servers.
    pub recursive: RecursiveConfig,
    /// `lookup.peers`: identity servers that push us the hashes of the addresses they hold
    /// and to which we push ours (MSC4004). Empty: nothing pushed nor accepted.
    pub peers: Vec<PeerConfig>,
}

/// `hashesPerPush`'s default: a part of 10,000 hashes is about 450 KB of JSON, within the
/// default `http.maxBodyBytes` (1 MiB) of the peer that receives it.
pub const HASHES_PER_PUSH: usize = 10_000;

/// One entry of `lookup.peers`: a trusted identity server of the group.
#[derive(Clone)]
pub struct PeerConfig {
    /// The name our `third_party_mappings` give for it, and the one its pushes must use:
    /// the host (and port) clients reach it at (`name`).
    pub name: String,
    /// Its base URL, without a trailing `/` (`url`): where we fetch its `hash_details` and
    /// push our hashes.
    pub url: String,
    /// The secret both sides share (`token`): its pushes to us carry it, and so do our
    /// calls to it.
    pub token: String,
    /// The longest one call to it may take (`timeout`, seconds).
    pub timeout: Duration,
    /// How long its last push is served once it stops pushing (`expireAfter`, seconds).
    pub expire_after: Duration,
    /// The most hashes one request of our push to it carries (`hashesPerPush`); more are
    /// sent in parts (mxisd's extension, which a peer of another kind may not know: 0 sends
    /// every push whole, as MSC4004 has it).
    pub hashes_per_push: usize,
}

// The token stays out of `{:?}` (check-config and logs print configs).
impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("expire_after", &self.expire_after)
            .field("hashes_per_push", &self.hashes_per_push)
            .finish_non_exhaustive()
    }
}

/// `lookup.recursive`: asking other identity servers when no local store knows an address.
#[derive(Debug, Clone)]
pub struct RecursiveConfig {
    /// mxisd 1.4's default: on (for `allowed` requesters only).
    pub enabled: bool,
    /// Requesters whose lookups may go remote (`allowedCidr`): loopback and private ranges.
    pub allowed: Vec<Cidr>,
    /// The whole time a request's remote steps may take together (`timeout`, seconds).
    pub budget: Duration,
    /// How long a remote answer, found or not, is kept (`cacheTime`, seconds).
    pub cache_time: Duration,
    /// Base URL (no trailing `/`) → access token of ours there: such a server is asked over
    /// v2 with sha256 hashes, so addresses never leave in clear (`accessTokens`).
    pub access_tokens: BTreeMap<String, String>,
}

/// Loopback and the private ranges: mxisd's default `allowedCidr`.
pub const PRIVATE_RANGES: [&str; 7] = [
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "fe80::/10",
];

#[derive(Debug, Clone)]
pub struct HashingConfig {
    /// Off: v2 lookups take only the `none` algorithm.
    pub enabled: bool,
    pub pepper_length: usize,
    /// The algorithms offered by `hash_details`, of `none` and `sha256`.
    pub algorithms: Vec<String>,
    /// How often the hash index is rebuilt from the stores.
    pub refresh_interval: Duration,
    /// The pepper the operator chose (`pepper`): one that differs from the stored pepper
    /// replaces it at start, which becomes the previous pepper. `None`: the stored one.
    pub pepper: Option<String>,
    /// How long lookups under the previous pepper are still answered after a rotation
    /// (`previousPepperGrace`, seconds).
    pub previous_pepper_grace: Duration,
}

/// The shortest peer token accepted: a secret that can be guessed is no authentication.
const MIN_PEER_TOKEN: usize = 16;

impl Resolver<'_> {
    pub(super) fn lookup(&mut self, l: raw::Lookup) -> Result<LookupConfig, String> {
        let max_addresses = l.max_addresses.unwrap_or(10_000);
        if max_addresses == 0 {
            return Err(self.at("lookup.maxAddresses", "must be at least 1"));
        }
        let default_region = match self.non_empty("lookup.defaultRegion", l.default_region)? {
            None => None,
            Some(r) => Some(
                r.to_ascii_uppercase()
                    .parse::<phonenumber::country::Id>()
                    .map_err(|_| {
                        self.at(
                            "lookup.defaultRegion",
                            format!("'{r}' is not a two-letter region code (GB, FR, US, ...)"),
                        )
                    })?,
            ),
        };
        let recursive = self.recursive(l.recursive.unwrap_or_default())?;
        let peers = self.peers(l.peers.unwrap_or_default())?;
        Ok(LookupConfig {
            bulk_enabled: l.bulk.and_then(|b| b.enabled).unwrap_or(true),
            max_addresses,
            default_region,
            recursive,
            peers,
        })
    }

    /// `lookup.peers`: each with a name, a URL and a token, names and tokens unique (a push
    /// is told apart by its token alone).
    fn peers(&mut self, list: Vec<raw::Peer>) -> Result<Vec<PeerConfig>, String> {
        let mut peers: Vec<PeerConfig> = Vec::new();
        for (i, p) in list.into_iter().enumerate() {
            let at = format!("lookup.peers[{i}]");
            let name = self
                .non_empty(&format!("{at}.name"), p.name)?
                .ok_or_else(|| self.required(&format!("{at}.name"), ""))?;
            if name.contains(char::is_whitespace) || name.contains('/') {
                return Err(self.at(
                    &format!("{at}.name"),
                    format!("'{name}' is not a host[:port]"),
                ));
            }
            let url = self
                .non_empty(&format!("{at}.url"), p.url)?
                .ok_or_else(|| self.required(&format!("{at}.url"), ""))?;
            self.http_url(&format!("{at}.url"), &url)?;
            let token = self
                .non_empty(&format!("{at}.token"), p.token)?
                .ok_or_else(|| self.required(&format!("{at}.token"), ""))?;
            if token.len() < MIN_PEER_TOKEN {
                return Err(self.at(
                    &format!("{at}.token"),
                    format!(
                        "is shorter than {MIN_PEER_TOKEN} characters: use a long random secret"
                    ),
                ));
            }
            if peers.iter().any(|o| o.name == name) {
                return Err(self.at(&format!("{at}.name"), format!("'{name}' is listed twice")));
            }
            if peers.iter().any(|o| o.token == token) {
                return Err(self.at(
                    &format!("{at}.token"),
                    "is another peer's token: each peer needs its own",
                ));
            }
            let timeout = self.seconds(&format!("{at}.timeout"), p.timeout, 30, 600)?;
            let expire_after = self.seconds(
                &format!("{at}.expireAfter"),
                p.expire_after,
                3600,
                30 * 86_400,
            )?;
            let hashes_per_push = p.hashes_per_push.unwrap_or(HASHES_PER_PUSH);
            peers.push(PeerConfig {
                name,
                url: url.trim_end_matches('/').to_owned(),
                token,
                timeout,
                expire_after,
                hashes_per_push,
            });
        }
        Ok(peers)
    }

    fn recursive(&mut self, r: raw::Recursive) -> Result<RecursiveConfig, String> {
        self.unsupported("lookup.recursive", &r.unsupported());
        let allowed = match r.allowed_cidr {
            Some(list) => self.cidrs("lookup.recursive.allowedCidr", Some(list))?,
            None => PRIVATE_RANGES
                .iter()
                .filter_map(|c| c.parse::<Cidr>().ok())
                .collect(),
        };
        let budget = self.seconds("lookup.recursive.timeout", r.timeout, 5, 60)?;
        let cache_time = self.seconds("lookup.recursive.cacheTime", r.cache_time, 60, 86_400)?;
        let mut access_tokens = BTreeMap::new();
        for (url, token) in r.access_tokens.unwrap_or_default() {
            let path = format!("lookup.recursive.accessTokens.{url}");
            self.http_url(&path, &url)?;
            let token = self.non_empty(&path, Some(token))?.unwrap_or_default();
            access_tokens.insert(url.trim_end_matches('/').to_owned(), token);
        }
        Ok(RecursiveConfig {
            enabled: r.enabled.unwrap_or(true),
            allowed,
            budget,
            cache_time,
            access_tokens,
        })
    }

    pub(super) fn hashing(&mut self, h: raw::Hashing) -> Result<HashingConfig, String> {
        self.unsupported("hashing", &h.unsupported());
        let enabled = h.enabled.unwrap_or(true);
        let pepper_length = h.pepper_length.unwrap_or(20);
        if !(8..=128).contains(&pepper_length) {
            return Err(self.at(
                "hashing.pepperLength",
                format!("{pepper_length} is outside 8..=128"),
            ));
        }
        let mut algorithms = h
            .algorithms
            .unwrap_or_else(|| vec!["sha256".into(), "none".into()]);
        for a in &algorithms {
            if a != "sha256" && a != "none" {
                return Err(self.at(
                    "hashing.algorithms",
                    format!("'{a}' is not one of sha256, none"),
                ));
            }
        }
        if !enabled {
            algorithms.retain(|a| a == "none");
        }
        if algorithms.is_empty() {
            return Err(self.at(
                "hashing.algorithms",
                "offers no algorithm: v2 lookups could not work",
            ));
        }
        let refresh = h.refresh_interval.unwrap_or(300);
        if !(1..=86_400).contains(&refresh) {
            return Err(self.at(
                "hashing.refreshInterval",
                format!("{refresh} s is outside 1..=86400"),
            ));
        }
        let pepper = self.non_empty("hashing.pepper", h.pepper)?;
        if let Some(p) = &pepper {
            if p.len() > 128 || !p.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(self.at(
                    "hashing.pepper",
                    "must be at most 128 printable ASCII characters, without spaces",
                ));
            }
        }
        let previous_pepper_grace = self.seconds(
            "hashing.previousPepperGrace",
            h.previous_pepper_grace,
            3600,
            30 * 86_400,
        )?;
        Ok(HashingConfig {
            enabled,
            pepper_length,
            algorithms,
            refresh_interval: Duration::from_secs(refresh),
            pepper,
            previous_pepper_grace,
        })
    }
}

/// `lookup` and `hashing` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        Lookup {
            bulk: LookupBulk = "bulk",
            max_addresses: usize = "maxAddresses",
            default_region: String = "defaultRegion",
            recursive: Recursive = "recursive",
            peers: Vec<Peer> = "peers",
        }
    }
    section! {
        /// An identity server of the group (MSC4004).
        Peer {
            name: String = "name",
            url: String = "url",
            token: String = "token",
            timeout: u64 = "timeout",
            expire_after: u64 = "expireAfter",
            hashes_per_push: usize = "hashesPerPush",
        }
    }
    section! {
        /// mxisd's `lookup.recursive`, with this version's budget, cache and v2 tokens.
        Recursive {
            enabled: bool = "enabled",
            allowed_cidr: Vec<String> = "allowedCidr",
            timeout: u64 = "timeout",
            cache_time: u64 = "cacheTime",
            access_tokens: std::collections::BTreeMap<String, String> = "accessTokens",
        } unsupported {
            bridge = "bridge",
        }
    }
    section! {
        LookupBulk {
            enabled: bool = "enabled",
        }
    }
    section! {
        /// ma1sd's hashed lookups (v2).
        Hashing {
            enabled: bool = "enabled",
            pepper_length: usize = "pepperLength",
            algorithms: Vec<String> = "algorithms",
            refresh_interval: u64 = "refreshInterval",
            pepper: String = "pepper",
            previous_pepper_grace: u64 = "previousPepperGrace",
        } unsupported {
            rotation_policy = "rotationPolicy",
            hash_storage_type = "hashStorageType",
            delay = "delay",
            requests = "requests",
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    const PEERS: &str = "matrix:\n  domain: example.org\nlookup:\n  peers:\n";

    fn peers(entries: &str) -> Result<Vec<super::PeerConfig>, String> {
        load_str(&format!("{PEERS}{entries}"), "test.yaml")
            .map(|l| l.config.lookup.peers)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn peers_are_read_with_their_defaults() {
        let list = peers(
            "    - name: 'id.b.example:8443'\n      url: 'https://id.b.example:8443/'\n      token: 'a-long-shared-secret'\n",
        )
        .unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].name, "id.b.example:8443");
        assert_eq!(list[0].url, "https://id.b.example:8443");
        assert_eq!(list[0].timeout.as_secs(), 30);
        assert_eq!(list[0].expire_after.as_secs(), 3600);
        assert!(!format!("{:?}", list[0]).contains("a-long-shared-secret"));
        let none = load_str("matrix:\n  domain: example.org\n", "test.yaml").unwrap();
        assert!(
            none.config.lookup.peers.is_empty(),
            "pushing is off by default"
        );
    }

    #[test]
    fn a_peer_needs_a_long_token_of_its_own() {
        let entry = |name: &str, token: &str| {
            format!("    - name: '{name}'\n      url: 'https://{name}'\n      token: '{token}'\n")
        };
        let short = peers(&entry("b.example", "short")).unwrap_err();
        assert!(short.contains("lookup.peers[0].token"), "{short}");
        let twice = peers(&format!(
            "{}{}",
            entry("b.example", "a-long-shared-secret"),
            entry("c.example", "a-long-shared-secret")
        ))
        .unwrap_err();
        assert!(twice.contains("another peer's token"), "{twice}");
        let missing =
            peers("    - name: 'b.example'\n      token: 'a-long-shared-secret'\n").unwrap_err();
        assert!(missing.contains("lookup.peers[0].url"), "{missing}");
    }

    #[test]
    fn a_chosen_pepper_and_its_grace() {
        let text = "matrix:\n  domain: example.org\nhashing:\n  pepper: 'new-pepper'\n  previousPepperGrace: 60\n";
        let h = load_str(text, "test.yaml").unwrap().config.hashing;
        assert_eq!(h.pepper.as_deref(), Some("new-pepper"));
        assert_eq!(h.previous_pepper_grace.as_secs(), 60);
        let spaced = "matrix:\n  domain: example.org\nhashing:\n  pepper: 'a b'\n";
        assert!(load_str(spaced, "test.yaml").is_err());
    }
}
