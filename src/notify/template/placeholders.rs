//! The `%NAME%` placeholders: the values by name, the one pass that cuts a template at
//! them, and the HTML escaping of a value.

/// Placeholder values by name (without the % signs), in the order given.
#[derive(Debug, Clone, Default)]
pub struct Placeholders(Vec<(String, String)>);

impl Placeholders {
    pub fn new() -> Placeholders {
        Placeholders(Vec::new())
    }

    /// Every (name, value), in the order set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Sets `name` to `value`, replacing an earlier value of the same name.
    pub fn set(&mut self, name: &str, value: impl Into<String>) -> &mut Placeholders {
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// HTML escaping of one value, safe in element content and in quoted attribute values.
pub fn escape_html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A template cut at its placeholders: literal text, or a known placeholder's value.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Piece<'a> {
    Text(&'a str),
    Value { name: &'a str, value: &'a str },
}

/// Cuts `template` at the placeholders `values` knows. One pass over the template, so a
/// value that itself looks like `%NAME%` is never expanded.
pub(super) fn pieces<'a>(template: &'a str, values: &'a Placeholders) -> Vec<Piece<'a>> {
    let bytes = template.as_bytes();
    let mut out = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        let name_end = i
            + 1
            + bytes[i + 1..]
                .iter()
                .take_while(|b| is_name_byte(**b))
                .count();
        let closed = name_end > i + 1 && bytes.get(name_end) == Some(&b'%');
        if !closed {
            i = name_end.max(i + 1);
            continue;
        }
        // Names are ASCII, so these are character boundaries.
        let name = &template[i + 1..name_end];
        match values.get(name) {
            Some(value) => {
                if text_start < i {
                    out.push(Piece::Text(&template[text_start..i]));
                }
                out.push(Piece::Value { name, value });
                i = name_end + 1;
                text_start = i;
            }
            // The closing `%` may open the next placeholder: `%UNKNOWN%DOMAIN%`.
            None => i = name_end,
        }
    }
    if text_start < template.len() {
        out.push(Piece::Text(&template[text_start..]));
    }
    out
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::super::fill_text;
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn placeholders_set_replaces_and_get_finds() {
        let mut p = Placeholders::new();
        p.set("A", "1").set("B", "2").set("A", "3");
        assert_eq!(p.get("A"), Some("3"));
        assert_eq!(p.get("B"), Some("2"));
        assert_eq!(p.get("C"), None);
        assert_eq!(p.0.len(), 2);
    }

    #[test]
    fn unknown_placeholders_and_lone_percents_stay() {
        let v = values();
        assert_eq!(
            fill_text("100% sure, %UNKNOWN% %lower% %% %DOMAIN% 50%", &v),
            "100% sure, %UNKNOWN% %lower% %% example.org 50%"
        );
        assert_eq!(fill_text("%UNKNOWN%DOMAIN%", &v), "%UNKNOWNexample.org");
        assert_eq!(fill_text("%DOMAIN%%DOMAIN%", &v), "example.orgexample.org");
        assert_eq!(fill_text("%", &v), "%");
        assert_eq!(fill_text("%DOMAIN", &v), "%DOMAIN");
        let m = fill("Subject: 100% %NOPE%\n\n%NOPE% 5%\n", &v);
        assert_eq!(header(&m, "Subject"), "100% %NOPE%");
        assert!(m.ends_with("\r\n\r\n%NOPE% 5%\r\n"));
    }

    #[test]
    fn values_are_never_expanded_again() {
        let mut v = values();
        v.set("FROM_NAME", "%DOMAIN%");
        assert_eq!(
            fill_text("%FROM_NAME% %DOMAIN%", &v),
            "%DOMAIN% example.org"
        );
    }
}
