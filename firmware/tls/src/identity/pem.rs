//! PEM text (RFC 7468) for the DER this module makes: base64 in 64-column lines between
//! `-----BEGIN label-----` and `-----END label-----`. Reading PEM is rustls-pki-types' job
//! (see [`super::install`]).

use alloc::string::String;

/// The label of a certificate.
pub const CERTIFICATE: &str = "CERTIFICATE";
/// The label of a PKCS#10 request.
pub const CERTIFICATE_REQUEST: &str = "CERTIFICATE REQUEST";

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `der` as a PEM block labelled `label`, ending with a newline.
pub fn encode(label: &str, der: &[u8]) -> String {
    let mut text = String::with_capacity(der.len() * 4 / 3 + der.len() / 48 + 2 * label.len() + 40);
    text.push_str("-----BEGIN ");
    text.push_str(label);
    text.push_str("-----\n");
    // 48 bytes make one 64-character line.
    for line in der.chunks(48) {
        for group in line.chunks(3) {
            let bytes = [group[0], group.get(1).copied().unwrap_or(0), group.get(2).copied().unwrap_or(0)];
            let bits = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
            for index in 0..4 {
                if index <= group.len() {
                    text.push(char::from(ALPHABET[(bits >> (18 - 6 * index) & 0x3f) as usize]));
                } else {
                    text.push('=');
                }
            }
        }
        text.push('\n');
    }
    text.push_str("-----END ");
    text.push_str(label);
    text.push_str("-----\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::{PemObject as _, SectionKind};

    #[test]
    fn rfc_4648_vectors() {
        let body = |der: &[u8]| encode("X", der).lines().nth(1).unwrap_or("").to_string();
        assert_eq!(body(b"f"), "Zg==");
        assert_eq!(body(b"fo"), "Zm8=");
        assert_eq!(body(b"foo"), "Zm9v");
        assert_eq!(body(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode("X", b""), "-----BEGIN X-----\n-----END X-----\n");
    }

    #[test]
    fn lines_are_64_columns_and_read_back() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = encode(CERTIFICATE_REQUEST, &der);
        let body: Vec<&str> = text.lines().filter(|line| !line.starts_with("-----")).collect();
        assert!(body[..body.len() - 1].iter().all(|line| line.len() == 64));
        let (kind, decoded) = <(SectionKind, Vec<u8>)>::from_pem_slice(text.as_bytes()).unwrap();
        assert_eq!((kind, decoded), (SectionKind::Csr, der));
    }
}
