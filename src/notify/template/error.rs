//! What can go wrong filling an e-mail template.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// A line of the filled message is longer than SMTP allows and cannot be cut (a
    /// template's own header line, an address): its number (from 1) and length in octets.
    /// Never its text, which may hold a user's data.
    LineTooLong { line: usize, octets: usize },
    /// The template is not a message: no blank line between headers and body, or no headers.
    NotAMessage,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::LineTooLong { line, octets } => write!(
                f,
                "line {line} of the message is {octets} octets, longer than SMTP allows (998), and cannot be cut"
            ),
            TemplateError::NotAMessage => f.write_str(
                "the e-mail template is not a whole message (headers, a blank line, the body)",
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_went_wrong() {
        let e = TemplateError::LineTooLong {
            line: 3,
            octets: 1200,
        };
        assert!(e.to_string().contains("998"));
        assert!(e.to_string().contains("line 3") && e.to_string().contains("1200 octets"));
        assert!(TemplateError::NotAMessage
            .to_string()
            .contains("blank line"));
    }
}
