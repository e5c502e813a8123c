//! The test SMTP sink (aiosmtpd, `tests/services/`): every mail it received is a file in a
//! Maildir. Tests send to addresses of their own and find their mails by recipient.

use super::services::{ensure_up, get};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn maildir() -> PathBuf {
    PathBuf::from(get("MXISD_TEST_DIR")).join("smtp/maildir/new")
}

/// Every mail so far whose envelope or headers name `to`.
pub fn mails_to(to: &str) -> Vec<String> {
    ensure_up();
    let needle = to.to_ascii_lowercase();
    let Ok(entries) = std::fs::read_dir(maildir()) else {
        return Vec::new();
    };
    let mut mails: Vec<(std::time::SystemTime, String)> = entries
        .flatten()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            let modified = e.metadata().and_then(|m| m.modified()).ok()?;
            text.to_ascii_lowercase()
                .contains(&needle)
                .then_some((modified, text))
        })
        .collect();
    mails.sort();
    mails.into_iter().map(|(_, text)| text).collect()
}

/// Waits (at most 10 s) until `count` mails to `to` arrived; all of them, oldest first.
pub fn wait_for(to: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mails = mails_to(to);
        if mails.len() >= count || Instant::now() > deadline {
            return mails;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The validation link in a mail (its first `https://…submitToken?…`).
pub fn link_in(mail: &str) -> String {
    let start = mail
        .find("https://")
        .unwrap_or_else(|| panic!("no link in:\n{mail}"));
    mail[start..]
        .split(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .next()
        .unwrap()
        .to_owned()
}

/// A query parameter of `url`.
pub fn param(url: &str, name: &str) -> String {
    url.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {url}"))
        .to_owned()
}
