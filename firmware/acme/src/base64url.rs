//! base64url without padding (RFC 4648 section 5, as JWS uses it: RFC 7515 section 2).
//! Decoding is strict: only the URL-safe alphabet, no padding, no white space, and the unused
//! low bits of the last character must be zero (one text per byte string).

use alloc::string::String;
use alloc::vec::Vec;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Length of the unpadded encoding of `length` bytes.
pub const fn encoded_length(length: usize) -> usize {
    (length * 4).div_ceil(3)
}

/// Appends the encoding of `input` to `out`.
pub fn encode_into(input: &[u8], out: &mut String) {
    out.reserve(encoded_length(input.len()));
    for group in input.chunks(3) {
        let b0 = group.first().copied().unwrap_or(0);
        let b1 = group.get(1).copied().unwrap_or(0);
        let b2 = group.get(2).copied().unwrap_or(0);
        let n = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        for index in 0..=group.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * index as u32)) & 0x3f) as usize]));
        }
    }
}

/// The encoding of `input`.
pub fn encode(input: &[u8]) -> String {
    let mut out = String::new();
    encode_into(input, &mut out);
    out
}

fn value(byte: u8) -> Option<u32> {
    ALPHABET.iter().position(|&letter| letter == byte).map(|position| position as u32)
}

/// Whether `text` is a non-empty string of base64url characters (what ACME tokens and nonces
/// are made of, RFC 8555 sections 6.5 and 8.1).
pub fn is_alphabet(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// The bytes `text` encodes, or `None` if it is not canonical unpadded base64url.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for group in bytes.chunks(4) {
        let mut n = 0u32;
        for (index, &byte) in group.iter().enumerate() {
            n |= value(byte)? << (18 - 6 * index as u32);
        }
        let produced = group.len() - 1;
        let kept = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        // The bits below the produced bytes must be zero (canonical form).
        if kept.iter().skip(produced).any(|&byte| byte != 0) {
            return None;
        }
        out.extend_from_slice(kept.get(..produced).unwrap_or(&[]));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors_in_the_url_alphabet_without_padding() {
        let table: &[(&[u8], &str)] =
            &[(b"", ""), (b"f", "Zg"), (b"fo", "Zm8"), (b"foo", "Zm9v"), (b"foob", "Zm9vYg"), (b"fooba", "Zm9vYmE"), (b"foobar", "Zm9vYmFy")];
        for (input, expected) in table {
            assert_eq!(encode(input), *expected);
            assert_eq!(decode(expected).unwrap(), *input);
            assert_eq!(encoded_length(input.len()), expected.len());
        }
        // The URL-safe letters for 62 and 63.
        assert_eq!(encode(&[0xfb, 0xff, 0xbf]), "-_-_");
        assert_eq!(decode("-_-_").unwrap(), [0xfb, 0xff, 0xbf]);
        // RFC 7515 appendix C's example.
        assert_eq!(encode(&[3, 236, 255, 224, 193]), "A-z_4ME");
    }

    #[test]
    fn decoding_is_strict() {
        // Padding, a lone character, the standard alphabet's + and /, white space, and
        // non-zero unused bits ("Zh" and "Zm9" carry a set bit below "f" and "fo").
        for bad in ["Zg==", "Zh", "Z", "Zm9v+", "Zm9v/", "Zm 9v", "Zm9vY", "Zm8=", "Zm9"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn round_trip_all_lengths() {
        let data: Vec<u8> = (0..=255u8).collect();
        for length in 0..data.len() {
            assert_eq!(decode(&encode(&data[..length])).unwrap(), &data[..length]);
        }
    }
}
