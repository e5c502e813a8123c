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

    /// Uniform over an alphabet whose size does not divide 256: of 129 positions, 3 hold
    /// `x`. Uniform, `x` comes 3/129 of the time (2326 of 100,000, σ ≈ 48); taking every
    /// byte (`b % 129`, no rejection) gives 4/256 (1563), rejecting one byte too few 4/130
    /// (3077): the bounds are ±6.8σ, so a uniform draw fails them about once in 10^11.
    #[test]
    fn draws_are_uniform_when_the_alphabet_does_not_divide_256() {
        let mut alphabet = [b'y'; 129];
        for i in [0, 127, 128] {
            alphabet[i] = b'x';
        }
        let s = string_from(&alphabet, 100_000).unwrap();
        assert_eq!(s.len(), 100_000);
        let xs = s.bytes().filter(|&b| b == b'x').count();
        assert!((2_000..=2_650).contains(&xs), "{xs} x of 100000");
    }
}
