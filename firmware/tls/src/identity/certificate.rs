//! The device's self-signed certificate for its host name: X.509 v3 (RFC 5280), signed
//! ecdsa-with-SHA256 by the device key; subject and issuer `CN=host`, SubjectAltName
//! `dNSName=host`, basicConstraints CA:FALSE and keyUsage digitalSignature (both critical),
//! extendedKeyUsage serverAuth; a random positive 16-octet serial. Sending MTAs encrypt to it
//! opportunistically; the owner replaces it with a CA-issued chain through [`super::install`].
//!
//! Also the ACME TLS-ALPN-01 validation certificate (RFC 8737 section 3): self-signed the same
//! way, with SubjectAltName `dNSName=host` and the critical acmeIdentifier extension holding
//! the SHA-256 of the key authorization, served only to `acme-tls/1` handshakes.

use alloc::vec::Vec;

use der::TagNumber;
use rand_core::CryptoRngCore;

use super::encode;
use super::host::HostName;
use super::key::DeviceKey;
use super::EncodeError;

/// The default validity: 397 days, the most the CA/Browser Forum allows a server certificate.
pub const DEFAULT_VALIDITY_DAYS: u32 = 397;

/// The serial's length: 16 octets, of which 126 bits random (the top bit is cleared so the
/// INTEGER is positive, the next set so it is exactly 16 octets long); RFC 5280 allows 20.
pub const SERIAL_LENGTH: usize = 16;

/// id-pe-acmeIdentifier (RFC 8737 section 6.1).
pub const ACME_IDENTIFIER: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.31");

/// A self-signed certificate (DER) for `host`, valid from `not_before` (Unix seconds) for
/// `validity_days` days, with its serial from `random`.
pub fn self_signed_certificate(
    key: &DeviceKey,
    host: &HostName,
    not_before: u64,
    validity_days: u32,
    random: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, EncodeError> {
    let extensions = [
        encode::basic_constraints_end_entity()?,
        encode::key_usage_digital_signature()?,
        encode::extended_key_usage_server()?,
        encode::subject_alt_name(host)?,
    ];
    self_signed_with(key, host, not_before, validity_days, &extensions, random)
}

/// The TLS-ALPN-01 validation certificate (DER) for `host`: SubjectAltName `dNSName=host` and
/// the critical acmeIdentifier extension whose value is `acme_identifier` (the DER OCTET
/// STRING of the key authorization's SHA-256, 34 bytes), valid for one day from `not_before`.
pub fn tls_alpn_01_certificate(
    key: &DeviceKey,
    host: &HostName,
    acme_identifier: &[u8],
    not_before: u64,
    random: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, EncodeError> {
    let extensions = [encode::subject_alt_name(host)?, encode::extension(&ACME_IDENTIFIER, true, acme_identifier)?];
    self_signed_with(key, host, not_before, 1, &extensions, random)
}

/// A self-signed certificate with the given extensions (each whole, DER).
fn self_signed_with(
    key: &DeviceKey,
    host: &HostName,
    not_before: u64,
    validity_days: u32,
    extensions: &[Vec<u8>],
    random: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, EncodeError> {
    let not_after = not_before.checked_add(u64::from(validity_days) * 86_400).ok_or(EncodeError::DateOutOfRange)?;
    let mut serial = [0u8; SERIAL_LENGTH];
    random.fill_bytes(&mut serial);
    serial[0] = (serial[0] & 0x7f) | 0x40;

    let version = encode::context_constructed(TagNumber::N0, &encode::unsigned(&[2])?)?;
    let name = encode::name(host)?;
    let validity = encode::sequence(&[&encode::time(not_before)?, &encode::time(not_after)?])?;
    let extensions = encode::sequence(&extensions.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
    let to_be_signed = encode::sequence(&[
        &version,
        &encode::unsigned(&serial)?,
        &encode::ecdsa_with_sha256()?,
        &name,
        &validity,
        &name,
        &key.public_key_der(),
        &encode::context_constructed(TagNumber::N3, &extensions)?,
    ])?;
    encode::signed(&to_be_signed, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::summary::CertificateSummary;

    #[test]
    fn fields_read_back_as_made() {
        let key = DeviceKey::generate(&mut rand_core::OsRng);
        let host = HostName::new("mx.example.org").unwrap();
        let certificate = self_signed_certificate(&key, &host, 1_767_225_600, 397, &mut rand_core::OsRng).unwrap();
        let summary = CertificateSummary::of(&certificate).unwrap();
        assert_eq!(summary.subject_common_name.as_deref(), Some("mx.example.org"));
        assert_eq!(summary.issuer_common_name.as_deref(), Some("mx.example.org"));
        assert_eq!((summary.not_before, summary.not_after), (1_767_225_600, 1_767_225_600 + 397 * 86_400));
        let spki = crate::der::subject_public_key_info(&certificate).unwrap();
        assert_eq!(spki.whole, &key.public_key_der()[..]);
    }

    #[test]
    fn serials_are_random_positive_and_sixteen_octets() {
        let key = DeviceKey::generate(&mut rand_core::OsRng);
        let host = HostName::new("mx.example.org").unwrap();
        let serial = |certificate: &[u8]| {
            let fields = crate::identity::parse::Certificate::parse(certificate).unwrap();
            fields.serial.to_vec()
        };
        let first = serial(&self_signed_certificate(&key, &host, 0, 1, &mut rand_core::OsRng).unwrap());
        let second = serial(&self_signed_certificate(&key, &host, 0, 1, &mut rand_core::OsRng).unwrap());
        assert_ne!(first, second);
        for value in [first, second] {
            assert_eq!(value.len(), SERIAL_LENGTH);
            assert_eq!(value[0] & 0xc0, 0x40);
        }
    }

    #[test]
    fn tls_alpn_01_certificate_carries_the_critical_acme_identifier() {
        let key = DeviceKey::generate(&mut rand_core::OsRng);
        let host = HostName::new("mx.example.org").unwrap();
        let mut value = [0x04u8; 34];
        value[1] = 0x20;
        let certificate = tls_alpn_01_certificate(&key, &host, &value, 1_767_225_600, &mut rand_core::OsRng).unwrap();
        // 1.3.6.1.5.5.7.1.31 as DER OID contents.
        let oid = [0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        assert_eq!(crate::der::extension_value(&certificate, &oid), Some(&value[..]));
        // Marked critical: the BOOLEAN TRUE right after the OID.
        let marker = [&[0x06, 0x08][..], &oid, &[0x01, 0x01, 0xff]].concat();
        assert!(certificate.windows(marker.len()).any(|window| window == marker));
        let summary = CertificateSummary::of(&certificate).unwrap();
        assert_eq!((summary.not_before, summary.not_after), (1_767_225_600, 1_767_225_600 + 86_400));
        let der = rustls::pki_types::CertificateDer::from(certificate.clone());
        // webpki does not know the extension, and it is critical: refused (it is for the CA's
        // validation only, never for clients).
        assert_eq!(webpki::EndEntityCert::try_from(&der).err(), Some(webpki::Error::UnsupportedCriticalExtension));
        // No keyUsage, basicConstraints or EKU in it.
        assert_eq!(crate::der::key_usage_allows_certificate_signing(&certificate), None);
    }

    #[test]
    fn a_date_past_9999_is_an_error_not_a_panic() {
        let key = DeviceKey::generate(&mut rand_core::OsRng);
        let host = HostName::new("mx.example.org").unwrap();
        let result = self_signed_certificate(&key, &host, 253_402_300_000, 397, &mut rand_core::OsRng);
        assert_eq!(result, Err(EncodeError::DateOutOfRange));
        let result = self_signed_certificate(&key, &host, u64::MAX - 10, 397, &mut rand_core::OsRng);
        assert_eq!(result, Err(EncodeError::DateOutOfRange));
    }
}
