//! `lookup` and `hashing`: bulk lookups, their size, phone number regions, and the v2 hashed
//! lookups (algorithms, pepper, index refresh).

use super::check::Resolver;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct LookupConfig {
    pub bulk_enabled: bool,
    /// Most addresses in one bulk or v2 lookup.
    pub max_addresses: usize,
    /// Region of phone numbers written without a country code in stores (`GB`, `FR`).
    pub default_region: Option<phonenumber::country::Id>,
}

#[derive(Debug, Clone)]
pub struct HashingConfig {
    /// Off: v2 lookups take only the `none` algorithm.
    pub enabled: bool,
    pub pepper_length: usize,
    /// The algorithms offered by `hash_details`, of `none` and `sha256`.
    pub algorithms: Vec<String>,
    /// How often the hash index is rebuilt from the stores.
    pub refresh_interval: Duration,
}

impl Resolver<'_> {
    pub(super) fn lookup(&mut self, l: raw::Lookup) -> Result<LookupConfig, String> {
        self.unsupported("lookup", &l.unsupported());
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
        Ok(LookupConfig {
            bulk_enabled: l.bulk.and_then(|b| b.enabled).unwrap_or(true),
            max_addresses,
            default_region,
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
        Ok(HashingConfig {
            enabled,
            pepper_length,
            algorithms,
            refresh_interval: Duration::from_secs(refresh),
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
        } unsupported {
            recursive = "recursive",
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
        } unsupported {
            rotation_policy = "rotationPolicy",
            hash_storage_type = "hashStorageType",
            delay = "delay",
            requests = "requests",
        }
    }
}
