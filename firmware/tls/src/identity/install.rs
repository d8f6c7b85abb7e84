//! The checks a CA-issued chain passes before it replaces the device's certificate
//! (`homemx tls install CHAIN.pem`), each refusal with its own error:
//!
//! 1. PEM text with at least one CERTIFICATE block and nothing else (a private key pasted
//!    along is refused: the device's key never comes from outside); at most
//!    [`MAXIMUM_CHAIN_LENGTH`] certificates, leaf first, and at least the leaf's issuer.
//! 2. The leaf carries the device's public key.
//! 3. The leaf is valid for the host name (rustls-webpki's
//!    `EndEntityCert::verify_is_valid_for_subject_name`: SubjectAltName dNSNames).
//! 4. Every certificate is valid at the given time (the leaf checked first).
//! 5. Each certificate is issued by the next one: its issuer is the next one's subject and its
//!    signature verifies with the next one's key, for every link, in the order given (the
//!    chain is served as installed, so an order clients cannot follow is refused too).
//! 6. rustls-webpki's path validation from the leaf to the last certificate as anchor:
//!    basicConstraints CA:TRUE and path lengths for the issuers, name constraints, the
//!    serverAuth EKU when the leaf has an EKU, and webpki's own signature and date checks.
//!
//! Whether the last certificate leads to a root that senders trust cannot be known here.

use alloc::vec::Vec;

use rustls::pki_types::pem::{self, PemObject as _, SectionKind};
use rustls::pki_types::{CertificateDer, DnsName, ServerName, UnixTime};

use super::host::HostName;
use super::key::DeviceKey;
use super::parse::Certificate;
use crate::crypto::signature::ALGORITHMS;
use crate::der::{self, SEQUENCE};

/// The most certificates a chain may hold (leaf, intermediates, root).
pub const MAXIMUM_CHAIN_LENGTH: usize = 8;

/// Why a chain was not installed.
#[derive(Clone, Debug, PartialEq)]
pub enum InstallError {
    /// Nothing but white space.
    Empty,
    /// Text that is not PEM, or PEM whose base64 is broken.
    NotPem,
    /// PEM without any CERTIFICATE block.
    NoCertificate,
    /// A block other than CERTIFICATE (a private key, a request …).
    UnexpectedBlock,
    /// More than [`MAXIMUM_CHAIN_LENGTH`] certificates.
    TooLong,
    /// Certificate `index` (0 = leaf) is not a readable X.509 certificate.
    Malformed { index: usize },
    /// Only the leaf: the issuer's certificate must follow it.
    IssuerMissing,
    /// The leaf's public key is not the device's.
    WrongKey,
    /// The leaf is not valid for the host name.
    WrongName,
    /// Certificate `index` is not valid before `not_before` (Unix seconds).
    NotYetValid { index: usize, not_before: u64 },
    /// Certificate `index` expired at `not_after` (Unix seconds).
    Expired { index: usize, not_after: u64 },
    /// Certificate `index` names an issuer other than certificate `index + 1`.
    WrongIssuer { index: usize },
    /// Certificate `index`'s signature does not verify with certificate `index + 1`'s key (or
    /// uses an algorithm the device does not check).
    BadSignature { index: usize },
    /// The leaf has an extendedKeyUsage without serverAuth.
    NotForServers,
    /// rustls-webpki's path validation refused the chain for another reason (an issuer that
    /// is not a CA, a path length or name constraint violated …).
    Refused(webpki::Error),
}

impl core::fmt::Display for InstallError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InstallError::Empty => write!(formatter, "the chain is empty"),
            InstallError::NotPem => write!(formatter, "the chain is not PEM text"),
            InstallError::NoCertificate => write!(formatter, "the PEM text holds no CERTIFICATE block"),
            InstallError::UnexpectedBlock => write!(formatter, "the PEM text holds a block other than CERTIFICATE (never include a private key)"),
            InstallError::TooLong => write!(formatter, "more than {MAXIMUM_CHAIN_LENGTH} certificates"),
            InstallError::Malformed { index } => write!(formatter, "certificate {index} is not a readable X.509 certificate"),
            InstallError::IssuerMissing => write!(formatter, "only the leaf certificate: append its issuer's certificate"),
            InstallError::WrongKey => write!(formatter, "the certificate is not for this device's key (use the CSR from `homemx tls csr`)"),
            InstallError::WrongName => write!(formatter, "the certificate is not valid for the configured host name"),
            InstallError::NotYetValid { index, .. } => write!(formatter, "certificate {index} is not valid yet"),
            InstallError::Expired { index, .. } => write!(formatter, "certificate {index} has expired"),
            InstallError::WrongIssuer { index } => {
                write!(formatter, "certificate {index} was not issued by certificate {}: wrong order or wrong intermediate", index + 1)
            }
            InstallError::BadSignature { index } => {
                write!(formatter, "certificate {index}'s signature does not verify with certificate {}'s key", index + 1)
            }
            InstallError::NotForServers => write!(formatter, "the certificate is not for TLS servers (extendedKeyUsage without serverAuth)"),
            InstallError::Refused(error) => write!(formatter, "the chain does not validate: {}", refusal_reason(error)),
        }
    }
}

/// webpki's reason in words, for the errors a CA-issued chain can plausibly meet; the rest by
/// a general phrase (their `Debug` text would pull all of webpki's error formatting into flash).
fn refusal_reason(error: &webpki::Error) -> &'static str {
    match error {
        webpki::Error::CaUsedAsEndEntity => "the leaf is a CA certificate",
        webpki::Error::EndEntityUsedAsCa => "an issuer is not a CA (basicConstraints)",
        webpki::Error::PathLenConstraintViolated => "an issuer's path length limit is exceeded",
        webpki::Error::NameConstraintViolation => "an issuer's name constraints exclude the name",
        webpki::Error::UnknownIssuer => "no path from the leaf to the last certificate",
        webpki::Error::UnsupportedCriticalExtension => "a certificate has a critical extension the device does not know",
        webpki::Error::UnsupportedCertVersion => "a certificate is not X.509 v3",
        webpki::Error::UnsupportedSignatureAlgorithmContext(_) | webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => "a signature algorithm the device does not check",
        _ => "a path rule of RFC 5280 is broken",
    }
}

/// Checks `chain_pem` (leaf first) for the device `key`, `host` and the time `now` (Unix
/// seconds; the caller refuses to install while the wall clock is unknown) and returns the
/// certificates (DER, leaf first) to store and serve.
pub fn check_chain(chain_pem: &[u8], key: &DeviceKey, host: &HostName, now: u64) -> Result<Vec<CertificateDer<'static>>, InstallError> {
    let chain = read_pem(chain_pem)?;
    let parsed = chain
        .iter()
        .enumerate()
        .map(|(index, certificate)| Certificate::parse(certificate).ok_or(InstallError::Malformed { index }))
        .collect::<Result<Vec<_>, _>>()?;
    let end_entity = webpki::EndEntityCert::try_from(&chain[0]).map_err(|_| InstallError::Malformed { index: 0 })?;
    if chain.len() < 2 {
        return Err(InstallError::IssuerMissing);
    }

    let leaf_key = der::subject_public_key(&parsed[0].public_key_info).ok_or(InstallError::Malformed { index: 0 })?;
    if !is_p256_key(&parsed[0].public_key_info) || !key.has_public_key(leaf_key) {
        return Err(InstallError::WrongKey);
    }

    let name = DnsName::try_from(host.as_str()).map_err(|_| InstallError::WrongName)?;
    end_entity.verify_is_valid_for_subject_name(&ServerName::DnsName(name)).map_err(|_| InstallError::WrongName)?;

    for (index, certificate) in parsed.iter().enumerate() {
        let (not_before, not_after) = certificate.validity;
        if now < not_before {
            return Err(InstallError::NotYetValid { index, not_before });
        }
        if now > not_after {
            return Err(InstallError::Expired { index, not_after });
        }
    }

    for (index, pair) in parsed.windows(2).enumerate() {
        let (subject, issuer) = (&pair[0], &pair[1]);
        if subject.issuer != issuer.subject {
            return Err(InstallError::WrongIssuer { index });
        }
        if !signed_by(subject, issuer) {
            return Err(InstallError::BadSignature { index });
        }
    }

    let last = chain.len() - 1;
    let anchor = webpki::anchor_from_trusted_cert(&chain[last]).map_err(|_| InstallError::Malformed { index: last })?;
    let time = UnixTime::since_unix_epoch(core::time::Duration::from_secs(now));
    let anchors = [anchor];
    let path = end_entity.verify_for_usage(ALGORITHMS.all, &anchors, &chain[1..last], time, webpki::KeyUsage::server_auth(), None, None);
    match path.map(|_| ()) {
        Ok(()) => {}
        Err(webpki::Error::RequiredEkuNotFoundContext(_)) => return Err(InstallError::NotForServers),
        Err(error) => return Err(InstallError::Refused(error)),
    }
    Ok(chain)
}

/// The CERTIFICATE blocks of `text`, in order.
fn read_pem(text: &[u8]) -> Result<Vec<CertificateDer<'static>>, InstallError> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(InstallError::Empty);
    }
    let mut chain = Vec::new();
    let mut blocks = 0usize;
    for block in <(SectionKind, Vec<u8>)>::pem_slice_iter(text) {
        let (kind, der) = block.map_err(|_: pem::Error| InstallError::NotPem)?;
        blocks += 1;
        if kind != SectionKind::Certificate {
            return Err(InstallError::UnexpectedBlock);
        }
        if chain.len() == MAXIMUM_CHAIN_LENGTH {
            return Err(InstallError::TooLong);
        }
        chain.push(CertificateDer::from(der));
    }
    match (blocks, chain.is_empty()) {
        (0, _) => Err(InstallError::NotPem),
        (_, true) => Err(InstallError::NoCertificate),
        _ => Ok(chain),
    }
}

/// id-ecPublicKey with the prime256v1 parameter, as AlgorithmIdentifier contents.
const EC_P256_ALGORITHM: &[u8] = &[
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
];

fn is_p256_key(public_key_info: &der::Tlv<'_>) -> bool {
    der::expect(public_key_info.contents, SEQUENCE).is_some_and(|(algorithm, _)| algorithm.contents == EC_P256_ALGORITHM)
}

/// Whether `subject`'s signature verifies with `issuer`'s public key, by an algorithm the
/// device checks (the crate's RSA, ECDSA and Ed25519 set).
fn signed_by(subject: &Certificate<'_>, issuer: &Certificate<'_>) -> bool {
    let Some((key_algorithm, _)) = der::expect(issuer.public_key_info.contents, SEQUENCE) else {
        return false;
    };
    let Some(key) = der::subject_public_key(&issuer.public_key_info) else {
        return false;
    };
    ALGORITHMS
        .all
        .iter()
        .filter(|algorithm| {
            &*algorithm.signature_alg_id() == subject.signature_algorithm && &*algorithm.public_key_alg_id() == key_algorithm.contents
        })
        .any(|algorithm| algorithm.verify_signature(key, subject.to_be_signed, subject.signature).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str) -> InstallError {
        let key = DeviceKey::generate(&mut rand_core::OsRng);
        check_chain(text.as_bytes(), &key, &HostName::new("mx.example.org").unwrap(), 1_800_000_000).unwrap_err()
    }

    #[test]
    fn text_that_holds_no_chain_is_refused_by_kind() {
        assert_eq!(refusal(""), InstallError::Empty);
        assert_eq!(refusal(" \n\t\r\n"), InstallError::Empty);
        assert_eq!(refusal("MIIB...not pem at all"), InstallError::NotPem);
        assert_eq!(refusal("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"), InstallError::NotPem);
        assert_eq!(refusal("-----BEGIN CERTIFICATE-----\nMIIB\n"), InstallError::NotPem);
        assert_eq!(refusal("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), InstallError::UnexpectedBlock);
        assert_eq!(refusal("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), InstallError::Malformed { index: 0 });
        let many = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".repeat(MAXIMUM_CHAIN_LENGTH + 1);
        assert_eq!(refusal(&many), InstallError::TooLong);
    }
}
