//! The base64 forms of the Matrix specification: unpadded standard base64 for keys and
//! signatures, unpadded URL-safe base64 for lookup hashes and ephemeral invite keys.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine};

const DECODE: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(false)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);

const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, DECODE);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, DECODE);

/// Unpadded standard base64, as used for public keys and signatures.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Unpadded URL-safe base64, as used for lookup hashes.
pub fn encode_url_safe(bytes: &[u8]) -> String {
    URL_SAFE.encode(bytes)
}

/// Padded standard base64, as HTTP basic authentication and MIME want it.
pub fn encode_padded(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard or URL-safe base64, padded or not: clients are not consistent.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode(b"f"), "Zg");
        assert_eq!(encode(&[0xfb, 0xff]), "+/8");
        assert_eq!(encode_url_safe(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn decodes_every_form() {
        for form in ["Zg", "Zg==", "-_8", "+/8", "+/8="] {
            assert!(decode(form).is_some(), "{form}");
        }
        assert_eq!(decode("-_8"), decode("+/8="));
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode(" +/8 "), Some(vec![0xfb, 0xff]));
        assert_eq!(decode("Zg=="), Some(b"f".to_vec()));
    }

    #[test]
    fn padded_for_basic_auth_and_mime() {
        assert_eq!(encode_padded(b"f"), "Zg==");
        assert_eq!(encode_padded(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(encode_padded(&[0xfb, 0xff]), "+/8=");
    }
}
