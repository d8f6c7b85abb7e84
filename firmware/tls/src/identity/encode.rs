//! The DER pieces the certificate and the request share, built with the `der` crate's
//! primitive encoders (tags, lengths, OIDs, integers, times, strings): names, the ECDSA
//! algorithm identifier, extensions, and the signed envelope. x509-cert's builder needs `std`,
//! so the structures are assembled here, each in the few lines RFC 5280 / RFC 2986 give it.

use alloc::vec::Vec;

use der::asn1::{BitStringRef, GeneralizedTime, Ia5StringRef, ObjectIdentifier, OctetStringRef, UintRef, UtcTime, Utf8StringRef};
use der::{Encode as _, Tag, TagNumber};

use super::host::HostName;
use super::key::DeviceKey;
use super::EncodeError;

/// ecdsa-with-SHA256 (RFC 5758).
pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// id-at-commonName.
pub const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
/// id-ce-subjectAltName.
pub const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
/// id-ce-basicConstraints.
pub const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
/// id-ce-keyUsage.
pub const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
/// id-ce-extKeyUsage.
pub const EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
/// id-kp-serverAuth.
pub const SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
/// pkcs-9-at-extensionRequest (RFC 2985).
pub const EXTENSION_REQUEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");

/// An element with `tag` around `contents`.
pub fn element(tag: Tag, contents: &[u8]) -> Result<Vec<u8>, EncodeError> {
    Ok(der::asn1::AnyRef::new(tag, contents)?.to_der()?)
}

/// A SEQUENCE of already-encoded `parts`.
pub fn sequence(parts: &[&[u8]]) -> Result<Vec<u8>, EncodeError> {
    element(Tag::Sequence, &parts.concat())
}

/// A SET of one already-encoded element (a SET OF with more elements would need sorting).
pub fn set_of_one(part: &[u8]) -> Result<Vec<u8>, EncodeError> {
    element(Tag::Set, part)
}

/// A context-specific constructed tag `[number]` around `contents`: an EXPLICIT tag around
/// one element, or an IMPLICIT tag replacing a SEQUENCE's or SET's.
pub fn context_constructed(number: TagNumber, contents: &[u8]) -> Result<Vec<u8>, EncodeError> {
    element(Tag::ContextSpecific { constructed: true, number }, contents)
}

/// An OBJECT IDENTIFIER.
pub fn oid(oid: &ObjectIdentifier) -> Result<Vec<u8>, EncodeError> {
    Ok(oid.to_der()?)
}

/// A non-negative INTEGER from its big-endian magnitude.
pub fn unsigned(magnitude: &[u8]) -> Result<Vec<u8>, EncodeError> {
    Ok(UintRef::new(magnitude)?.to_der()?)
}

/// AlgorithmIdentifier { ecdsa-with-SHA256 } (no parameters, RFC 5758 3.2).
pub fn ecdsa_with_sha256() -> Result<Vec<u8>, EncodeError> {
    sequence(&[&oid(&ECDSA_WITH_SHA256)?])
}

/// A Name: `CN=host` when the name fits the commonName, otherwise the empty sequence (the
/// SubjectAltName then carries the name and is critical, RFC 5280 4.2.1.6).
pub fn name(host: &HostName) -> Result<Vec<u8>, EncodeError> {
    if !host.fits_common_name() {
        return sequence(&[]);
    }
    let value = Utf8StringRef::new(host.as_str())?.to_der()?;
    let attribute = sequence(&[&oid(&COMMON_NAME)?, &value])?;
    sequence(&[&set_of_one(&attribute)?])
}

/// A Time (RFC 5280 4.1.2.5): UTCTime through 2049, GeneralizedTime from 2050.
pub fn time(unix_seconds: u64) -> Result<Vec<u8>, EncodeError> {
    let duration = core::time::Duration::from_secs(unix_seconds);
    let date = der::DateTime::from_unix_duration(duration).map_err(|_| EncodeError::DateOutOfRange)?;
    if date.year() < 2050 {
        Ok(UtcTime::from_date_time(date).map_err(|_| EncodeError::DateOutOfRange)?.to_der()?)
    } else {
        Ok(GeneralizedTime::from_date_time(date).to_der()?)
    }
}

/// An Extension { extnID, critical (only when TRUE: DER omits the default), extnValue }.
pub fn extension(id: &ObjectIdentifier, critical: bool, value: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let id = oid(id)?;
    let value = OctetStringRef::new(value)?.to_der()?;
    if critical {
        sequence(&[&id, &true.to_der()?, &value])
    } else {
        sequence(&[&id, &value])
    }
}

/// SubjectAltName { dNSName host }, critical when the subject is empty.
pub fn subject_alt_name(host: &HostName) -> Result<Vec<u8>, EncodeError> {
    let dns_name = Ia5StringRef::new(host.as_str())?;
    let general_name = element(Tag::ContextSpecific { constructed: false, number: TagNumber::N2 }, dns_name.as_bytes())?;
    extension(&SUBJECT_ALT_NAME, !host.fits_common_name(), &sequence(&[&general_name])?)
}

/// basicConstraints CA:FALSE, critical (the empty sequence: cA's default is FALSE).
pub fn basic_constraints_end_entity() -> Result<Vec<u8>, EncodeError> {
    extension(&BASIC_CONSTRAINTS, true, &sequence(&[])?)
}

/// keyUsage digitalSignature, critical: the key signs handshakes, never certificates.
pub fn key_usage_digital_signature() -> Result<Vec<u8>, EncodeError> {
    // digitalSignature is bit 0: one octet 0x80 with 7 unused bits.
    let bits = BitStringRef::new(7, &[0x80])?.to_der()?;
    extension(&KEY_USAGE, true, &bits)
}

/// extendedKeyUsage serverAuth.
pub fn extended_key_usage_server() -> Result<Vec<u8>, EncodeError> {
    extension(&EXTENDED_KEY_USAGE, false, &sequence(&[&oid(&SERVER_AUTH)?])?)
}

/// The signed envelope of a certificate or request: SEQUENCE { to_be_signed,
/// ecdsa-with-SHA256, BIT STRING signature }, signed by `key`.
pub fn signed(to_be_signed: &[u8], key: &DeviceKey) -> Result<Vec<u8>, EncodeError> {
    let signature = key.sign_der(to_be_signed);
    let bits = BitStringRef::new(0, &signature)?.to_der()?;
    sequence(&[to_be_signed, &ecdsa_with_sha256()?, &bits])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_switch_to_generalized_in_2050() {
        // 2049-12-31T23:59:59Z and 2050-01-01T00:00:00Z.
        assert_eq!(time(2_524_607_999).unwrap(), b"\x17\x0d491231235959Z");
        assert_eq!(time(2_524_608_000).unwrap(), b"\x18\x0f20500101000000Z");
        assert_eq!(time(u64::MAX), Err(EncodeError::DateOutOfRange));
    }

    #[test]
    fn fixed_extensions_have_their_rfc_encodings() {
        assert_eq!(basic_constraints_end_entity().unwrap(), [0x30, 0x0c, 0x06, 0x03, 0x55, 0x1d, 0x13, 0x01, 0x01, 0xff, 0x04, 0x02, 0x30, 0x00]);
        assert_eq!(
            key_usage_digital_signature().unwrap(),
            [0x30, 0x0e, 0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01, 0xff, 0x04, 0x04, 0x03, 0x02, 0x07, 0x80]
        );
    }

    #[test]
    fn positive_integers_get_a_leading_zero_when_needed() {
        assert_eq!(unsigned(&[0x80, 0x01]).unwrap(), [0x02, 0x03, 0x00, 0x80, 0x01]);
        assert_eq!(unsigned(&[0x00, 0x7f]).unwrap(), [0x02, 0x01, 0x7f]);
    }
}
