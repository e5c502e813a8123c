//! Which listed addresses a single LDAP lookup would find. A lookup searches with its
//! medium's filter template (`ldap.identity.medium.<medium>`, or one term per attribute of
//! `attribute.threepid.<medium>`) filled with the address; the hash index must hold exactly
//! those answers, without asking the directory once per address. So the listing searches
//! with the token as `*` (every entry the template could match: the template's terms
//! without the token stay with the directory) and each address of a listed entry is kept
//! only if the template's terms with the token match the entry's own values here.
//!
//! Templates this can evaluate: `(&<terms without the token>…<part with the token>)` or a
//! part with the token alone, where that part is equality or substring terms holding the
//! token joined by `&` and `|`. Anything else (a `!` or `>=` over the token, a term without
//! the token under `|`) is refused: the medium is then not listed, and the log says so.

/// A medium's lookup template, ready for listing.
#[derive(Debug)]
pub struct Template {
    /// The directory search that lists every entry the template could match.
    pub listing: String,
    /// The attributes the terms with the token compare.
    pub attributes: Vec<String>,
    tree: Node,
    /// Compare as telephoneNumberMatch does: spaces and hyphens ignored.
    phone: bool,
}

#[derive(Debug)]
enum Node {
    /// A term without the token, ANDed at the top: the listing search already checked it.
    Checked,
    All(Vec<Node>),
    Any(Vec<Node>),
    /// `(attr=value)`: the value's parts between `*`s, each of text and tokens.
    Term {
        attr: String,
        segments: Vec<Vec<Piece>>,
    },
}

#[derive(Debug)]
enum Piece {
    Text(String),
    Token,
}

/// A filter as written.
enum Raw {
    And(Vec<Raw>),
    Or(Vec<Raw>),
    Not(Box<Raw>),
    Item {
        attr: String,
        equality: bool,
        value: String,
    },
}

impl Template {
    /// The template `filter`, where `token` stands for the address.
    pub fn parse(filter: &str, token: &str, phone: bool) -> Result<Template, String> {
        let mut rest = filter.trim();
        let raw = parse_filter(&mut rest)?;
        if !rest.trim().is_empty() {
            return Err(format!("unexpected '{}' after the filter", rest.trim()));
        }
        let tree = match &raw {
            Raw::And(parts) => Node::All(
                parts
                    .iter()
                    .map(|p| {
                        if has_token(p, token) {
                            token_part(p, token)
                        } else {
                            Ok(Node::Checked)
                        }
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other if !has_token(other, token) => Node::Checked,
            other => token_part(other, token)?,
        };
        let mut attributes = Vec::new();
        tree.attributes(&mut attributes);
        Ok(Template {
            listing: filter.trim().replace(token, "*"),
            attributes,
            tree,
            phone,
        })
    }

    /// The template of a lookup without one: the address in any of `attrs`.
    pub fn of_attributes(attrs: &[String], phone: bool) -> Template {
        let terms: Vec<Node> = attrs
            .iter()
            .map(|a| Node::Term {
                attr: a.clone(),
                segments: vec![vec![Piece::Token]],
            })
            .collect();
        Template {
            listing: format!(
                "(|{})",
                attrs.iter().map(|a| format!("({a}=*)")).collect::<String>()
            ),
            attributes: attrs.to_vec(),
            tree: Node::Any(terms),
            phone,
        }
    }

    /// Whether the template filled with `value` matches an entry of these attributes.
    pub fn matches(&self, entry: &[(String, Vec<String>)], value: &str) -> bool {
        self.tree.matches(entry, value, self.phone)
    }
}

impl Node {
    fn attributes(&self, into: &mut Vec<String>) {
        match self {
            Node::Checked => {}
            Node::All(parts) | Node::Any(parts) => parts.iter().for_each(|p| p.attributes(into)),
            Node::Term { attr, .. } => {
                if !into.iter().any(|a| a.eq_ignore_ascii_case(attr)) {
                    into.push(attr.clone());
                }
            }
        }
    }

    fn matches(&self, entry: &[(String, Vec<String>)], value: &str, phone: bool) -> bool {
        match self {
            Node::Checked => true,
            Node::All(parts) => parts.iter().all(|p| p.matches(entry, value, phone)),
            Node::Any(parts) => parts.iter().any(|p| p.matches(entry, value, phone)),
            Node::Term { attr, segments } => {
                let wanted: Vec<String> = segments
                    .iter()
                    .map(|pieces| {
                        let text: String = pieces
                            .iter()
                            .map(|p| match p {
                                Piece::Text(t) => t.as_str(),
                                Piece::Token => value,
                            })
                            .collect();
                        normalise(&text, phone)
                    })
                    .collect();
                entry
                    .iter()
                    .filter(|(name, _)| name.eq_ignore_ascii_case(attr))
                    .flat_map(|(_, values)| values)
                    .any(|v| glob(&normalise(v, phone), &wanted))
            }
        }
    }
}

/// Values as the directory compares them: case-insensitively (caseIgnoreMatch), phone
/// numbers without spaces and hyphens (telephoneNumberMatch).
fn normalise(text: &str, phone: bool) -> String {
    let folded = caseless::default_case_fold_str(text);
    if phone {
        folded.chars().filter(|c| *c != ' ' && *c != '-').collect()
    } else {
        folded
    }
}

/// Equality (one segment) or a substring match (`initial*any*…*final`).
fn glob(value: &str, segments: &[String]) -> bool {
    let [first, middle @ .., last] = segments else {
        return segments.first().is_some_and(|s| s == value);
    };
    let Some(mut rest) = value.strip_prefix(first.as_str()) else {
        return false;
    };
    for part in middle {
        match rest.find(part.as_str()) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last.as_str())
}

fn has_token(raw: &Raw, token: &str) -> bool {
    match raw {
        Raw::And(parts) | Raw::Or(parts) => parts.iter().any(|p| has_token(p, token)),
        Raw::Not(inner) => has_token(inner, token),
        Raw::Item { value, .. } => value.contains(token),
    }
}

/// The part of a template holding the token: terms with it, under `&` and `|`.
fn token_part(raw: &Raw, token: &str) -> Result<Node, String> {
    match raw {
        Raw::And(parts) => Ok(Node::All(
            parts
                .iter()
                .map(|p| token_part(p, token))
                .collect::<Result<_, _>>()?,
        )),
        Raw::Or(parts) => Ok(Node::Any(
            parts
                .iter()
                .map(|p| token_part(p, token))
                .collect::<Result<_, _>>()?,
        )),
        Raw::Not(_) => Err("a '!' over the token".into()),
        Raw::Item { attr, .. } if !has_token(raw, token) => Err(format!(
            "the term on {attr} has no token and is not ANDed at the top"
        )),
        Raw::Item {
            attr,
            equality: false,
            ..
        } => Err(format!(
            "the term on {attr} with the token is not an equality or substring match"
        )),
        Raw::Item { attr, value, .. } => Ok(Node::Term {
            attr: attr.clone(),
            segments: pieces(value, token)?,
        }),
    }
}

/// A term's value split at its `*`s, escapes (`\2a`) decoded, the token found.
fn pieces(value: &str, token: &str) -> Result<Vec<Vec<Piece>>, String> {
    let mut segments = vec![Vec::new()];
    let mut text: Vec<u8> = Vec::new();
    let flush = |text: &mut Vec<u8>, segment: &mut Vec<Piece>| {
        if !text.is_empty() {
            segment.push(Piece::Text(String::from_utf8_lossy(text).into_owned()));
            text.clear();
        }
    };
    let mut rest = value;
    while let Some(c) = rest.chars().next() {
        let segment = segments.last_mut().ok_or("no segment")?;
        if let Some(after) = rest.strip_prefix(token) {
            flush(&mut text, segment);
            segment.push(Piece::Token);
            rest = after;
        } else if c == '*' {
            flush(&mut text, segment);
            segments.push(Vec::new());
            rest = &rest[1..];
        } else if c == '\\' {
            let hex = rest
                .get(1..3)
                .ok_or("a '\\' not followed by two hex digits")?;
            text.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape \\{hex}"))?);
            rest = &rest[3..];
        } else {
            let mut buf = [0; 4];
            text.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            rest = &rest[c.len_utf8()..];
        }
    }
    if let Some(segment) = segments.last_mut() {
        flush(&mut text, segment);
    }
    Ok(segments)
}

/// One parenthesised filter from the start of `rest` (RFC 4515), `rest` left after it.
fn parse_filter(rest: &mut &str) -> Result<Raw, String> {
    *rest = rest.trim_start();
    let inner = rest
        .strip_prefix('(')
        .ok_or_else(|| format!("expected '(' at '{rest}'"))?;
    *rest = inner.trim_start();
    let raw = match rest.chars().next() {
        Some(op @ ('&' | '|' | '!')) => {
            *rest = &rest[1..];
            let mut parts = Vec::new();
            while rest.trim_start().starts_with('(') {
                parts.push(parse_filter(rest)?);
            }
            match (op, parts.len()) {
                ('&', _) => Raw::And(parts),
                ('|', _) => Raw::Or(parts),
                (_, 1) => Raw::Not(Box::new(parts.remove(0))),
                _ => return Err("a '!' over other than one filter".into()),
            }
        }
        _ => {
            let end = rest.find(')').ok_or("a term without ')'")?;
            let item = &rest[..end];
            let eq = item
                .find('=')
                .ok_or_else(|| format!("'{item}' is not a term"))?;
            let (attr, value) = (&item[..eq], &item[eq + 1..]);
            let equality = !attr.ends_with(['~', '<', '>', ':']);
            *rest = &rest[end..];
            Raw::Item {
                attr: attr.trim().to_owned(),
                equality,
                value: value.to_owned(),
            }
        }
    };
    *rest = rest
        .trim_start()
        .strip_prefix(')')
        .ok_or("a filter without its ')'")?;
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn terms_with_the_token_are_matched_here_the_others_left_to_the_directory() {
        let t = Template::parse(
            "(&(objectClass=person)(!(employeeType=disabled))(|(mail=%3pid)(otherMailbox=x-%3pid)))",
            "%3pid",
            false,
        )
        .unwrap();
        assert_eq!(
            t.listing,
            "(&(objectClass=person)(!(employeeType=disabled))(|(mail=*)(otherMailbox=x-*)))"
        );
        assert_eq!(t.attributes, ["mail", "otherMailbox"]);
        let e = entry(&[
            ("mail", &["Alice@Example.org"]),
            ("otherMailbox", &["x-b@c.d"]),
        ]);
        assert!(t.matches(&e, "alice@example.org"));
        assert!(t.matches(&e, "b@c.d"));
        assert!(!t.matches(&e, "x-b@c.d"));
    }

    #[test]
    fn substrings_escapes_and_phone_numbers() {
        let t = Template::parse("(telephoneNumber=+%3pid)", "%3pid", true).unwrap();
        let e = entry(&[("telephoneNumber", &["+44 20 7946-0001"])]);
        assert!(t.matches(&e, "442079460001"));
        assert!(!t.matches(&e, "+442079460001"));
        let t = Template::parse("(cn=*\\2a%3pid*)", "%3pid", false).unwrap();
        assert!(t.matches(&entry(&[("cn", &["a*Bob c"])]), "bob"));
        assert!(!t.matches(&entry(&[("cn", &["a Bob c"])]), "bob"));
    }

    #[test]
    fn templates_that_cannot_be_evaluated_here_are_refused() {
        for bad in [
            "(!(mail=%3pid))",
            "(|(mail=%3pid)(objectClass=admin))",
            "(&(objectClass=person)(!(mail=%3pid)))",
            "(mail>=%3pid)",
            "(mail=%3pid",
            "mail=%3pid",
        ] {
            assert!(Template::parse(bad, "%3pid", false).is_err(), "{bad}");
        }
    }
}
