//! Prometheus' text exposition format (version 0.0.4): `# HELP` and `# TYPE` lines, then
//! samples `name{label="value",...} number`. Help text escapes `\` and line feeds; label
//! values escape `\`, `"` and line feeds. Names and label names are ours (constants), never
//! escaped: they are checked by the tests instead.

use std::fmt::Write;

/// The content type of what [`Text`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A page of metric families being written.
#[derive(Default)]
pub struct Text {
    out: String,
}

impl Text {
    pub fn new() -> Text {
        Text::default()
    }

    /// Starts a family: its help and type lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(
            self.out,
            "# HELP {name} {}\n# TYPE {name} {}",
            escape_help(help),
            kind.as_str()
        );
    }

    /// One sample of an integer value.
    pub fn int(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.start(name, labels);
        let _ = writeln!(self.out, " {value}");
    }

    /// One sample of a signed integer value (a gauge that may go below zero).
    pub fn signed(&mut self, name: &str, labels: &[(&str, &str)], value: i64) {
        self.start(name, labels);
        let _ = writeln!(self.out, " {value}");
    }

    /// One sample of a real value (`+Inf`, `-Inf` and `NaN` as the format writes them).
    pub fn real(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.start(name, labels);
        self.out.push(' ');
        self.out.push_str(&number(value));
        self.out.push('\n');
    }

    fn start(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.out.push_str(name);
        if labels.is_empty() {
            return;
        }
        self.out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{label}=\"{}\"", escape_label(value));
        }
        self.out.push('}');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A real number as the format writes it.
pub fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{value}")
    }
}

/// Help text: `\` and line feeds escaped.
pub fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A label value: `\`, `"` and line feeds escaped.
pub fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslash_quote_and_line_feed() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("one\ntwo"), "one\\ntwo");
        assert_eq!(escape_label("/v2/pubkey/{keyId}"), "/v2/pubkey/{keyId}");
        let mut t = Text::new();
        t.int("x_total", &[("a", "q\"\\\n"), ("b", "")], 3);
        assert_eq!(t.finish(), "x_total{a=\"q\\\"\\\\\\n\",b=\"\"} 3\n");
    }

    #[test]
    fn help_escapes_backslash_and_line_feed_but_not_quotes() {
        assert_eq!(escape_help("a \"b\" c\\d\ne"), "a \"b\" c\\\\d\\ne");
        let mut t = Text::new();
        t.family("x_total", Kind::Counter, "line one\nline \\two");
        assert_eq!(
            t.finish(),
            "# HELP x_total line one\\nline \\\\two\n# TYPE x_total counter\n"
        );
    }

    #[test]
    fn reals_use_the_formats_words_for_infinities_and_nan() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(3.0), "3");
        let mut t = Text::new();
        t.real("x_bucket", &[("le", "+Inf")], 1.5);
        t.int("y", &[], 0);
        t.signed("z", &[], -2);
        assert_eq!(t.finish(), "x_bucket{le=\"+Inf\"} 1.5\ny 0\nz -2\n");
    }
}
