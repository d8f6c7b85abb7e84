//! Minimal DER reading for X.509 certificates: the few fields webpki does not check for us
//! (the SubjectPublicKeyInfo a pin names, the trust anchor's own validity dates, an issuer's
//! keyUsage). Every length is checked; nothing here panics on hostile input.

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

/// The context tag `[3]` (explicit, constructed) that holds a certificate's extensions.
pub const EXTENSIONS_TAG: u8 = 0xa3;
/// The OID tag.
pub const OID: u8 = 0x06;
/// The OCTET STRING tag.
pub const OCTET_STRING: u8 = 0x04;
/// The BOOLEAN tag.
pub const BOOLEAN: u8 = 0x01;
/// UTCTime.
pub const UTC_TIME: u8 = 0x17;
/// GeneralizedTime.
pub const GENERALIZED_TIME: u8 = 0x18;
/// id-ce-keyUsage (2.5.29.15), as DER OID contents.
pub const KEY_USAGE_OID: &[u8] = &[0x55, 0x1d, 0x0f];

/// The fields of a TBSCertificate after the version: serialNumber, signature, issuer,
/// validity, subject, subjectPublicKeyInfo, then the optional ones.
fn tbs_fields(certificate: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = expect(certificate, SEQUENCE)?;
    let (tbs, _) = expect(certificate.contents, SEQUENCE)?;
    let (first, after_first) = read_tlv(tbs.contents)?;
    Some(if first.tag == VERSION_TAG { after_first } else { tbs.contents })
}

/// A certificate's validity as (notBefore, notAfter) in seconds since the Unix epoch.
pub fn validity(certificate: &[u8]) -> Option<(u64, u64)> {
    let mut rest = tbs_fields(certificate)?;
    // serialNumber, signature, issuer
    for _ in 0..3 {
        rest = read_tlv(rest)?.1;
    }
    let (validity, _) = expect(rest, SEQUENCE)?;
    let (not_before, rest) = read_tlv(validity.contents)?;
    let (not_after, rest) = read_tlv(rest)?;
    if !rest.is_empty() {
        return None;
    }
    Some((time(&not_before)?, time(&not_after)?))
}

/// id-ce-authorityKeyIdentifier (2.5.29.35), as DER OID contents.
pub const AUTHORITY_KEY_IDENTIFIER_OID: &[u8] = &[0x55, 0x1d, 0x23];

/// The value (the OCTET STRING's contents) of a certificate's extension `oid` (DER contents);
/// `None` when the certificate has no such extension or is malformed on the way to it.
pub fn extension_value<'a>(certificate: &'a [u8], oid: &[u8]) -> Option<&'a [u8]> {
    let mut rest = tbs_fields(certificate)?;
    // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
    for _ in 0..6 {
        rest = read_tlv(rest)?.1;
    }
    while let Some((field, after)) = read_tlv(rest) {
        rest = after;
        if field.tag != EXTENSIONS_TAG {
            continue;
        }
        let (extensions, _) = expect(field.contents, SEQUENCE)?;
        let mut list = extensions.contents;
        while !list.is_empty() {
            let (extension, after) = expect(list, SEQUENCE)?;
            list = after;
            let (id, mut inner) = expect(extension.contents, OID)?;
            if id.contents != oid {
                continue;
            }
            if let Some((_critical, after)) = expect(inner, BOOLEAN) {
                inner = after;
            }
            return Some(expect(inner, OCTET_STRING)?.0.contents);
        }
        return None;
    }
    None
}

/// Whether a certificate's keyUsage extension allows signing certificates: `None` when it
/// has no keyUsage (RFC 5280 4.2.1.3: then any use is allowed), `Some(false)` when it has one
/// without keyCertSign.
pub fn key_usage_allows_certificate_signing(certificate: &[u8]) -> Option<bool> {
    let value = extension_value(certificate, KEY_USAGE_OID)?;
    let (bits, _) = expect(value, BIT_STRING)?;
    // keyCertSign is bit 5: 0x04 in the first octet after the unused-bits count.
    let first = bits.contents.get(1).copied().unwrap_or(0);
    Some(first & 0x04 != 0)
}

/// The keyIdentifier of a certificate's authorityKeyIdentifier extension (RFC 5280 4.2.1.1:
/// `[0] IMPLICIT OCTET STRING` in the extension's SEQUENCE), for ACME renewal information.
pub fn authority_key_identifier(certificate: &[u8]) -> Option<&[u8]> {
    let (sequence, _) = expect(extension_value(certificate, AUTHORITY_KEY_IDENTIFIER_OID)?, SEQUENCE)?;
    let (identifier, _) = expect(sequence.contents, 0x80)?;
    Some(identifier.contents)
}

/// The contents of a certificate's serialNumber INTEGER (with its sign octet, if any).
pub fn serial_number(certificate: &[u8]) -> Option<&[u8]> {
    Some(expect(tbs_fields(certificate)?, 0x02)?.0.contents)
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as
/// seconds since the Unix epoch.
fn time(tlv: &Tlv<'_>) -> Option<u64> {
    let text = tlv.contents;
    let (year, rest) = match tlv.tag {
        UTC_TIME if text.len() == 13 => {
            let short = digits(&text[..2])?;
            (if short < 50 { 2000 + short } else { 1900 + short }, &text[2..])
        }
        GENERALIZED_TIME if text.len() == 15 => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let hour = digits(&rest[4..6])?;
    let minute = digits(&rest[6..8])?;
    let second = digits(&rest[8..10])?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 || year < 1970 {
        return None;
    }
    Some(days_since_epoch(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn digits(text: &[u8]) -> Option<u64> {
    text.iter().try_fold(0u64, |value, &digit| digit.is_ascii_digit().then(|| value * 10 + u64::from(digit - b'0')))
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm), for years >= 1970.
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
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
    fn reads_both_time_forms() {
        let utc = Tlv { tag: UTC_TIME, whole: &[], contents: b"260102030405Z" };
        assert_eq!(time(&utc), Some(1_767_323_045));
        let generalized = Tlv { tag: GENERALIZED_TIME, whole: &[], contents: b"20500101000000Z" };
        assert_eq!(time(&generalized), Some(2_524_608_000));
        let local = Tlv { tag: UTC_TIME, whole: &[], contents: b"2601020304051" };
        assert_eq!(time(&local), None);
        let month_13 = Tlv { tag: UTC_TIME, whole: &[], contents: b"261302030405Z" };
        assert_eq!(time(&month_13), None);
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
            let _ = validity(&bytes);
            let _ = key_usage_allows_certificate_signing(&bytes);
            let _ = authority_key_identifier(&bytes);
            let _ = serial_number(&bytes);
        }
    }
}
