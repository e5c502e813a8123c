//! Randomness from the kernel (`/dev/urandom`), for seeds, tokens and session ids.

use std::fs::File;
use std::io::{self, Read};

/// Fills `buf` from the kernel's CSPRNG.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    File::open("/dev/urandom")?.read_exact(buf)
}

/// `len` characters drawn uniformly from `alphabet` (at most 256 characters).
pub fn string_from(alphabet: &[u8], len: usize) -> io::Result<String> {
    debug_assert!(!alphabet.is_empty() && alphabet.len() <= 256);
    // Rejection sampling keeps the draw uniform when 256 is not a multiple of the alphabet.
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        fill(&mut buf)?;
        for &b in buf.iter().filter(|&&b| (b as usize) < limit) {
            if out.len() == len {
                break;
            }
            out.push(alphabet[b as usize % alphabet.len()] as char);
        }
    }
    Ok(out)
}

pub const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_have_the_length_and_alphabet_asked() {
        let s = string_from(b"01", 300).unwrap();
        assert_eq!(s.len(), 300);
        assert!(s.contains('0') && s.contains('1'));
        assert!(s.bytes().all(|b| b == b'0' || b == b'1'));
        assert_ne!(
            string_from(ALPHANUMERIC, 32).unwrap(),
            string_from(ALPHANUMERIC, 32).unwrap()
        );
    }
}
