//! Minimal DER reading for X.509 certificates: enough to find the SubjectPublicKeyInfo (the
//! pinned value) and the subject public key inside it. Every length is checked; nothing here
//! panics on hostile input.

/// A DER tag-length-value: the tag, the whole encoding, and the contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag octet (only single-octet tags are accepted).
    pub tag: u8,
    /// Tag, length and contents: the exact bytes a hash of the element covers.
    pub whole: &'a [u8],
    /// The contents.
    pub contents: &'a [u8],
}

/// The SEQUENCE tag.
pub const SEQUENCE: u8 = 0x30;
/// The BIT STRING tag.
pub const BIT_STRING: u8 = 0x03;
/// The context tag `[0]` (explicit, constructed) that holds a certificate's version.
pub const VERSION_TAG: u8 = 0xa0;

/// Reads one TLV from the front of `input`; returns it and the rest. Long-form lengths up to
/// four octets; indefinite lengths (not DER) are refused.
pub fn read_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *input.first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let first = *input.get(1)?;
    let (length, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 {
            return None;
        }
        let mut length = 0usize;
        for index in 0..octets {
            length = (length << 8) | usize::from(*input.get(2 + index)?);
        }
        (length, 2 + octets)
    };
    let end = header.checked_add(length)?;
    let whole = input.get(..end)?;
    Some((Tlv { tag, whole, contents: &whole[header..] }, &input[end..]))
}

/// Reads one TLV that must carry `tag`.
pub fn expect(input: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
    let (tlv, rest) = read_tlv(input)?;
    (tlv.tag == tag).then_some((tlv, rest))
}

/// The SubjectPublicKeyInfo of an X.509 certificate, as its whole DER encoding.
///
/// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature };
/// TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
/// validity, subject, subjectPublicKeyInfo, ... }.
pub fn subject_public_key_info(certificate: &[u8]) -> Option<Tlv<'_>> {
    let (certificate, _) = expect(certificate, SEQUENCE)?;
    let (tbs, _) = expect(certificate.contents, SEQUENCE)?;
    let mut rest = tbs.contents;
    let (first, after_first) = read_tlv(rest)?;
    if first.tag == VERSION_TAG {
        rest = after_first;
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        rest = read_tlv(rest)?.1;
    }
    let (spki, _) = expect(rest, SEQUENCE)?;
    Some(spki)
}

/// The public key bits of a SubjectPublicKeyInfo (for EC keys: the SEC1 point).
pub fn subject_public_key<'a>(spki: &Tlv<'a>) -> Option<&'a [u8]> {
    let (_algorithm, rest) = expect(spki.contents, SEQUENCE)?;
    let (bits, _) = expect(rest, BIT_STRING)?;
    // The first contents octet counts unused bits; a key always uses them all.
    match bits.contents.split_first()? {
        (0, key) => Some(key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths() {
        let (tlv, rest) = read_tlv(&[0x04, 0x02, 0xaa, 0xbb, 0xcc]).unwrap();
        assert_eq!((tlv.tag, tlv.contents, rest), (0x04, &[0xaa, 0xbb][..], &[0xcc][..]));
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        let (tlv, rest) = read_tlv(&long).unwrap();
        assert_eq!((tlv.contents.len(), rest.len()), (0x80, 0));
    }

    #[test]
    fn refuses_truncation_indefinite_and_huge_lengths() {
        assert!(read_tlv(&[]).is_none());
        assert!(read_tlv(&[0x30]).is_none());
        assert!(read_tlv(&[0x30, 0x03, 0x01]).is_none());
        assert!(read_tlv(&[0x30, 0x80, 0x00, 0x00]).is_none());
        assert!(read_tlv(&[0x30, 0x85, 1, 2, 3, 4, 5]).is_none());
        assert!(read_tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(read_tlv(&[0x1f, 0x01, 0x00]).is_none());
    }

    #[test]
    fn never_panics_on_any_prefix_of_garbage() {
        let mut state = 0x1234_5678u32;
        for length in 0..300 {
            let bytes: Vec<u8> = (0..length)
                .map(|_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (state >> 16) as u8
                })
                .collect();
            let _ = subject_public_key_info(&bytes).and_then(|spki| subject_public_key(&spki).map(|_| ()));
        }
    }
}
