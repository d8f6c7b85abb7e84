//! Server-key pinning: the owner provisions the SHA-256 of the smarthost's (or POP3 server's)
//! SubjectPublicKeyInfo; a handshake succeeds only if the server's leaf certificate carries
//! exactly that key and the server proves possession of it (TLS 1.3 CertificateVerify).
//!
//! Neither the issuer, the names nor the validity dates are looked at: the pin names the key,
//! so pinning also works before the wall clock is known. P-256 (ECDSA-SHA256) keys only, the
//! only signature this firmware verifies.

use embedded_tls::{
    Aes128GcmSha256, CertificateEntryRef, CertificateRef, CertificateVerifyRef, SignatureScheme, TlsError,
    TlsVerifier,
};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::der::{subject_public_key, subject_public_key_info};

/// The SHA-256 of a certificate's SubjectPublicKeyInfo (what `openssl x509 -pubkey | openssl
/// pkey -pubin -outform der | sha256sum` prints); `None` if the certificate does not parse.
pub fn spki_sha256(certificate_der: &[u8]) -> Option<[u8; 32]> {
    let spki = subject_public_key_info(certificate_der)?;
    Some(Sha256::digest(spki.whole).into())
}

/// The TLS 1.3 context string of a server's CertificateVerify (RFC 8446 4.4.3).
const SERVER_CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify\x00";

/// Accepts one pinned server key.
pub struct PinVerifier {
    pin: [u8; 32],
    key: Option<VerifyingKey>,
    transcript: Option<Sha256>,
}

impl PinVerifier {
    /// A verifier for the key whose SPKI hashes to `pin`.
    pub fn new(pin: [u8; 32]) -> Self {
        Self { pin, key: None, transcript: None }
    }
}

impl TlsVerifier<Aes128GcmSha256> for PinVerifier {
    fn set_hostname_verification(&mut self, _hostname: &str) -> Result<(), TlsError> {
        // The pin identifies the server; the name is still sent as SNI by embedded-tls.
        Ok(())
    }

    fn verify_certificate(&mut self, transcript: &Sha256, certificate: CertificateRef) -> Result<(), TlsError> {
        let Some(CertificateEntryRef::X509(leaf)) = certificate.entries.first() else {
            return Err(TlsError::InvalidCertificate);
        };
        let spki = subject_public_key_info(leaf).ok_or(TlsError::InvalidCertificate)?;
        let digest: [u8; 32] = Sha256::digest(spki.whole).into();
        if !constant_time_equal(&digest, &self.pin) {
            return Err(TlsError::InvalidCertificate);
        }
        let point = subject_public_key(&spki).ok_or(TlsError::InvalidCertificate)?;
        self.key = Some(VerifyingKey::from_sec1_bytes(point).map_err(|_| TlsError::InvalidCertificate)?);
        self.transcript = Some(transcript.clone());
        Ok(())
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef) -> Result<(), TlsError> {
        let (Some(key), Some(transcript)) = (self.key.take(), self.transcript.take()) else {
            return Err(TlsError::InvalidHandshake);
        };
        if verify.signature_scheme != SignatureScheme::EcdsaSecp256r1Sha256 {
            return Err(TlsError::InvalidSignatureScheme);
        }
        let mut message = [0x20u8; 64 + SERVER_CONTEXT.len() + 32];
        message[64..64 + SERVER_CONTEXT.len()].copy_from_slice(SERVER_CONTEXT);
        message[64 + SERVER_CONTEXT.len()..].copy_from_slice(&transcript.finalize());
        let signature = Signature::from_der(verify.signature).map_err(|_| TlsError::InvalidSignature)?;
        key.verify(&message, &signature).map_err(|_| TlsError::InvalidSignature)
    }
}

fn constant_time_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |difference, (x, y)| difference | (x ^ y)) == 0
}
