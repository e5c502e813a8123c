//! The checks every section shares, on the way from the file as written to the typed
//! configuration: ranges of seconds, CIDR lists, non-empty strings, readable files, http(s)
//! URLs, required keys; and the messages, which name the key path and its line.

use super::yaml::locate;
use crate::cidr::Cidr;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Resolves sections: the file's text (for lines) and the warnings collected.
pub(super) struct Resolver<'a> {
    pub(super) text: &'a str,
    pub(super) warnings: &'a mut Vec<String>,
}

impl Resolver<'_> {
    pub(super) fn unsupported(&mut self, section: &str, keys: &[&str]) {
        for key in keys {
            let path = if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            };
            let line = locate(self.text, &path)
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            self.warnings.push(format!(
                "`{path}`{line} is recognised (mxisd/ma1sd), not supported by this version: ignored"
            ));
        }
    }

    /// A key this version does not implement and cannot ignore: ignored, it would fail at
    /// run time or allow what the operator forbade (`why`). The start stops naming it.
    pub(super) fn refused(&self, path: &str, why: &str) -> String {
        self.at(
            path,
            format!("is not implemented by this version and cannot be ignored: {why}; remove it, or keep mxisd/ma1sd"),
        )
    }

    /// A number of seconds at `path` in `1..=max`, `default` when absent.
    pub(super) fn seconds(
        &self,
        path: &str,
        value: Option<u64>,
        default: u64,
        max: u64,
    ) -> Result<Duration, String> {
        match value.unwrap_or(default) {
            s if (1..=max).contains(&s) => Ok(Duration::from_secs(s)),
            s => Err(self.at(path, format!("{s} s is outside 1..={max}"))),
        }
    }

    /// An error about a key that is present: its path and, where we find it, its line.
    pub(super) fn at(&self, path: &str, message: impl fmt::Display) -> String {
        match locate(self.text, path) {
            Some(line) => format!("`{path}` (line {line}): {message}"),
            None => format!("`{path}`: {message}"),
        }
    }

    /// A key that must be there and is not: its path, and the line of the nearest section
    /// above it that is written, if any.
    pub(super) fn required(&self, path: &str, what: &str) -> String {
        let mut section = path;
        while let Some((parent, _)) = section.rsplit_once('.') {
            // A list entry (`identities[0]`) is looked for as its list.
            let parent = parent.split_once('[').map_or(parent, |(list, _)| list);
            if let Some(line) = locate(self.text, parent) {
                return format!("`{path}` is required{what} (in `{parent}`, line {line})");
            }
            section = parent;
        }
        format!("`{path}` is required{what}")
    }

    /// A list of CIDR ranges; an entry that is not one is an error at `path`.
    pub(super) fn cidrs(&self, path: &str, list: Option<Vec<String>>) -> Result<Vec<Cidr>, String> {
        list.unwrap_or_default()
            .iter()
            .map(|c| c.parse::<Cidr>().map_err(|e| self.at(path, e)))
            .collect()
    }

    pub(super) fn non_empty(
        &self,
        path: &str,
        value: Option<String>,
    ) -> Result<Option<String>, String> {
        match value {
            Some(v) if v.trim().is_empty() => Err(self.at(path, "is empty")),
            other => Ok(other.map(|v| v.trim().to_owned())),
        }
    }

    /// A file path that must name a readable file, when given.
    pub(super) fn readable_file(
        &self,
        path: &str,
        value: Option<String>,
    ) -> Result<Option<PathBuf>, String> {
        let file = self.non_empty(path, value)?.map(PathBuf::from);
        if let Some(f) = file.as_ref().filter(|f| !f.is_file()) {
            return Err(self.at(path, format!("{} is not a readable file", f.display())));
        }
        Ok(file)
    }

    /// A PEM file of certificates (a `caFile`), when given: readable, with at least one
    /// certificate, each one usable as a trust anchor — what the start will load from it.
    pub(super) fn pem_file(
        &self,
        path: &str,
        value: Option<String>,
    ) -> Result<Option<PathBuf>, String> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let Some(file) = self.readable_file(path, value)? else {
            return Ok(None);
        };
        let bad = |why: String| self.at(path, format!("{}: {why}", file.display()));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&file).map_err(|e| bad(e.to_string()))? {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        Ok(Some(file))
    }

    /// A URL that must be http or https.
    pub(super) fn http_url(&self, path: &str, url: &str) -> Result<(), String> {
        if url.starts_with("https://") || url.starts_with("http://") {
            Ok(())
        } else {
            Err(self.at(path, format!("'{url}' is not an http(s) URL")))
        }
    }
}
