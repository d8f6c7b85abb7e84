//! The fields of an X.509 certificate that the chain checks and the status summary read, over
//! the crate's bounds-checked [`crate::der`] reader: the signed part and its signature, serial,
//! issuer and subject names, validity, public key, and a Name's commonName.

use alloc::string::String;

use crate::der::{self, Tlv, BIT_STRING, SEQUENCE, VERSION_TAG};

/// The INTEGER tag.
const INTEGER: u8 = 0x02;
/// The SET tag.
const SET: u8 = 0x31;
/// id-at-commonName (2.5.4.3) as DER OID contents.
const COMMON_NAME_OID: &[u8] = &[0x55, 0x04, 0x03];

/// A certificate split into the fields read here.
#[derive(Clone, Copy, Debug)]
pub struct Certificate<'a> {
    /// TBSCertificate, tag and length included: what the signature covers.
    pub to_be_signed: &'a [u8],
    /// The contents of the outer signatureAlgorithm (OID and parameters), as rustls-pki-types'
    /// `AlgorithmIdentifier` holds them.
    pub signature_algorithm: &'a [u8],
    /// The signature's bits.
    pub signature: &'a [u8],
    /// The serial number's contents.
    pub serial: &'a [u8],
    /// The issuer Name, whole.
    pub issuer: &'a [u8],
    /// The subject Name, whole.
    pub subject: &'a [u8],
    /// notBefore and notAfter, Unix seconds.
    pub validity: (u64, u64),
    /// The SubjectPublicKeyInfo.
    pub public_key_info: Tlv<'a>,
}

impl<'a> Certificate<'a> {
    /// The fields of `certificate` (DER), or `None` if it is not shaped like a certificate.
    pub fn parse(certificate: &'a [u8]) -> Option<Self> {
        let (outer, trailing) = der::expect(certificate, SEQUENCE)?;
        if !trailing.is_empty() {
            return None;
        }
        let (tbs, rest) = der::expect(outer.contents, SEQUENCE)?;
        let (algorithm, rest) = der::expect(rest, SEQUENCE)?;
        let (bits, rest) = der::expect(rest, BIT_STRING)?;
        if !rest.is_empty() {
            return None;
        }
        let signature = match bits.contents.split_first()? {
            (0, signature) => signature,
            _ => return None,
        };
        let mut fields = tbs.contents;
        let (first, after_first) = der::read_tlv(fields)?;
        if first.tag == VERSION_TAG {
            fields = after_first;
        }
        let (serial, fields) = der::expect(fields, INTEGER)?;
        let (_inner_algorithm, fields) = der::expect(fields, SEQUENCE)?;
        let (issuer, fields) = der::expect(fields, SEQUENCE)?;
        let (_validity, fields) = der::expect(fields, SEQUENCE)?;
        let (subject, fields) = der::expect(fields, SEQUENCE)?;
        let (public_key_info, _) = der::expect(fields, SEQUENCE)?;
        Some(Self {
            to_be_signed: tbs.whole,
            signature_algorithm: algorithm.contents,
            signature,
            serial: serial.contents,
            issuer: issuer.whole,
            subject: subject.whole,
            validity: der::validity(certificate)?,
            public_key_info,
        })
    }
}

/// The last commonName of a Name (whole DER), as text; `None` if it has none or is malformed.
/// UTF8String, PrintableString, IA5String and TeletexString are read as UTF-8 (lossy),
/// BMPString as UTF-16; control characters become U+FFFD, so the text is safe to log.
pub fn common_name(name: &[u8]) -> Option<String> {
    let (name, _) = der::expect(name, SEQUENCE)?;
    let mut relative_names = name.contents;
    let mut found = None;
    while !relative_names.is_empty() {
        let (relative_name, rest) = der::expect(relative_names, SET)?;
        relative_names = rest;
        let mut attributes = relative_name.contents;
        while !attributes.is_empty() {
            let (attribute, rest) = der::expect(attributes, SEQUENCE)?;
            attributes = rest;
            let (kind, value) = der::expect(attribute.contents, der::OID)?;
            if kind.contents == COMMON_NAME_OID {
                found = Some(der::read_tlv(value)?.0);
            }
        }
    }
    let value = found?;
    let text: String = match value.tag {
        // UTF8String, PrintableString, TeletexString, IA5String
        0x0c | 0x13 | 0x14 | 0x16 => String::from_utf8_lossy(value.contents).into_owned(),
        // BMPString
        0x1e if value.contents.len() % 2 == 0 => {
            let units = value.contents.chunks(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units).map(|unit| unit.unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
        }
        _ => return None,
    };
    Some(text.chars().map(|character| if character.is_control() { char::REPLACEMENT_CHARACTER } else { character }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SEQUENCE { SET { SEQUENCE { OID, value } } ... } from (oid, tag, value) triples.
    fn name(attributes: &[(&[u8], u8, &[u8])]) -> alloc::vec::Vec<u8> {
        let mut sets = alloc::vec::Vec::new();
        for (oid, tag, value) in attributes {
            let mut attribute = alloc::vec![0x06, oid.len() as u8];
            attribute.extend_from_slice(oid);
            attribute.extend([*tag, value.len() as u8]);
            attribute.extend_from_slice(value);
            let mut sequence = alloc::vec![0x30, attribute.len() as u8];
            sequence.extend(attribute);
            sets.extend([0x31, sequence.len() as u8]);
            sets.extend(sequence);
        }
        let mut whole = alloc::vec![0x30, sets.len() as u8];
        whole.extend(sets);
        whole
    }

    #[test]
    fn reads_the_last_common_name_in_each_string_type() {
        let organisation: &[u8] = &[0x55, 0x04, 0x0a];
        assert_eq!(common_name(&name(&[(organisation, 0x0c, b"Org"), (COMMON_NAME_OID, 0x13, b"mx.example.org")])).as_deref(), Some("mx.example.org"));
        assert_eq!(common_name(&name(&[(COMMON_NAME_OID, 0x0c, b"first"), (COMMON_NAME_OID, 0x0c, b"last")])).as_deref(), Some("last"));
        assert_eq!(common_name(&name(&[(COMMON_NAME_OID, 0x1e, &[0x00, 0x41, 0x00, 0xe9])])).as_deref(), Some("A\u{e9}"));
        assert_eq!(common_name(&name(&[(COMMON_NAME_OID, 0x0c, b"a\nb\x1b")])).as_deref(), Some("a\u{fffd}b\u{fffd}"));
        assert_eq!(common_name(&name(&[(organisation, 0x0c, b"Org")])), None);
        assert_eq!(common_name(&[0x30, 0x00]), None);
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut state = 0x9e37_79b9u32;
        for length in 0..400 {
            let bytes: alloc::vec::Vec<u8> = (0..length)
                .map(|_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (state >> 16) as u8
                })
                .collect();
            let _ = Certificate::parse(&bytes);
            let _ = common_name(&bytes);
        }
    }
}
