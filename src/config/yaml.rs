//! The YAML file as written: mxisd's and ma1sd's keys (camelCase), every field optional,
//! unknown keys refused. Each section's structs live in its own file (`<section>.rs`,
//! module `raw`), the whole file's in `root.rs`; this file holds the `section!` macro that
//! declares them, and where a key is written (its line), for messages.
//!
//! Keys that mxisd or ma1sd know but this version does not implement yet are accepted as
//! `Unsupported` and reported once at start.

use serde::de::IgnoredAny;

/// A key that mxisd/ma1sd know and this version does not implement: present or absent.
pub type Unsupported = Option<IgnoredAny>;

/// Declares a section struct: its implemented keys (typed) and its recognised-but-unsupported
/// keys, so the names reported as unsupported are the names serde matched.
macro_rules! section {
    ($(#[$meta:meta])* $name:ident {
        $($field:ident : $ty:ty = $key:literal,)*
    } unsupported { $($ufield:ident = $ukey:literal,)+ }) => {
        $(#[$meta])*
        #[derive(::serde::Deserialize, Default, Debug)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(#[serde(rename = $key)] pub $field: Option<$ty>,)*
            $(#[serde(rename = $ukey)] pub $ufield: $crate::config::yaml::Unsupported,)+
        }

        impl $name {
            /// The recognised keys of this section that are set but not implemented.
            pub fn unsupported(&self) -> Vec<&'static str> {
                let mut keys: Vec<&'static str> = Vec::new();
                $(if self.$ufield.is_some() { keys.push($ukey); })+
                keys
            }
        }
    };
    ($(#[$meta:meta])* $name:ident {
        $($field:ident : $ty:ty = $key:literal,)*
    }) => {
        $(#[$meta])*
        #[derive(::serde::Deserialize, Default, Debug)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(#[serde(rename = $key)] pub $field: Option<$ty>,)*
        }
    };
}
pub(super) use section;

/// serde_yaml-style messages already carry the key path and position ("server.port: invalid
/// type: ... at line 3 column 9"); unknown keys are said in our words, and a repeated key
/// gets the line of its repetition.
pub(super) fn describe_yaml_error(e: &yaml_serde::Error, text: &str) -> String {
    let message = e.to_string();
    if let Some(key) = named_key(&message, "unknown field `") {
        let position = e
            .location()
            .map(|l| format!(" (line {})", l.line()))
            .unwrap_or_default();
        return format!("unknown key `{key}`{position}: neither mxisd nor ma1sd has this key; check its spelling and indentation");
    }
    // At the top level the parser's message for a repeated key says no line.
    if let Some(key) = named_key(&message, "duplicate field `") {
        if !message.contains(" at line ") {
            if let Some(line) = locate_all(text, &key).get(1) {
                return format!("{message} (line {line}): a key may be written once");
            }
        }
    }
    message
}

/// The full path of the key a parser message names after `marker`: the path the message
/// starts with (`server.tls: …`, empty at the top level) and the key in backquotes.
fn named_key(message: &str, marker: &str) -> Option<String> {
    let (path, rest) = message.split_once(marker)?;
    let key = rest.split('`').next().unwrap_or_default();
    let path = path.trim().trim_end_matches(':');
    Some(if path.is_empty() || path == "." {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    })
}

/// The line (1-based) where the key at `path` (`a.b.c`) is written, for block-style YAML.
pub(super) fn locate(text: &str, path: &str) -> Option<usize> {
    locate_all(text, path).first().copied()
}

/// Every line where the key at `path` is written (more than one if it is repeated): each
/// segment is looked for below the first place of its parent, more indented than it.
fn locate_all(text: &str, path: &str) -> Vec<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let segments: Vec<&str> = path.split('.').collect();
    let (mut from, mut parent_indent) = (0, None::<usize>);
    for (n, segment) in segments.iter().enumerate() {
        // Direct children share the indentation of the block's first line.
        let mut child_indent = None;
        let mut hits = Vec::new();
        for (i, line) in lines.iter().enumerate().skip(from) {
            let content = line.trim_start();
            let indent = line.len() - content.len();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            if parent_indent.is_some_and(|p| indent <= p) {
                break; // left the parent's block
            }
            if *child_indent.get_or_insert(indent) != indent {
                continue;
            }
            let key = content.trim_start_matches(['"', '\'']);
            let rest = key
                .strip_prefix(segment)
                .map(|r| r.trim_start_matches(['"', '\'']));
            if rest.is_some_and(|r| r.starts_with(':')) {
                hits.push((i, indent));
            }
        }
        if n + 1 == segments.len() {
            return hits.iter().map(|(i, _)| i + 1).collect();
        }
        let Some(&(i, indent)) = hits.first() else {
            return Vec::new();
        };
        (from, parent_indent) = (i + 1, Some(indent));
    }
    Vec::new()
}
