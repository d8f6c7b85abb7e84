//! The crypto provider handed to embedded-tls for every provider connection: the random
//! source, AES-128-GCM-SHA256, and the owner's choice of trust.

use embedded_tls::pki::CertVerifier;
use embedded_tls::{
    Aes128GcmSha256, Certificate, CertificateRef, CertificateVerifyRef, CryptoProvider, TlsClock, TlsError,
    TlsVerifier,
};
use rand_core::CryptoRngCore;
use sha2::Sha256;

use crate::pin::PinVerifier;

/// Room for the server's certificate chain kept between the Certificate and CertificateVerify
/// messages (a P-256 leaf plus one intermediate is about 1.5 KB).
pub const CHAIN_CAPACITY: usize = 4096;

/// How the server is recognised; chosen by the owner at provisioning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust<'a> {
    /// A CA certificate (DER): the server's chain must lead to it, the leaf must name the host,
    /// and every certificate must be valid at the wall-clock time (which must be known).
    CaAnchor(&'a [u8]),
    /// The SHA-256 of the server's SubjectPublicKeyInfo.
    PinnedKey([u8; 32]),
}

/// The verifier for a [`Trust`]; `Clock` supplies the wall-clock time for validity dates.
pub enum TrustVerifier<'a, Clock: TlsClock> {
    /// CA anchor, host name and validity (embedded-tls's `rustpki`).
    Ca(CertVerifier<'a, Aes128GcmSha256, Clock, CHAIN_CAPACITY>),
    /// Pinned server key.
    Pin(PinVerifier),
}

impl<Clock: TlsClock> TlsVerifier<Aes128GcmSha256> for TrustVerifier<'_, Clock> {
    fn set_hostname_verification(&mut self, hostname: &str) -> Result<(), TlsError> {
        match self {
            TrustVerifier::Ca(verifier) => verifier.set_hostname_verification(hostname),
            TrustVerifier::Pin(verifier) => verifier.set_hostname_verification(hostname),
        }
    }

    fn verify_certificate(&mut self, transcript: &Sha256, certificate: CertificateRef) -> Result<(), TlsError> {
        match self {
            TrustVerifier::Ca(verifier) => {
                // Validity dates need the time: without it the CA mode refuses (the caller
                // defers until SNTP has answered).
                if Clock::now().is_none() {
                    return Err(TlsError::InvalidCertificate);
                }
                verifier.verify_certificate(transcript, certificate)
            }
            TrustVerifier::Pin(verifier) => verifier.verify_certificate(transcript, certificate),
        }
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef) -> Result<(), TlsError> {
        match self {
            TrustVerifier::Ca(verifier) => verifier.verify_signature(verify),
            TrustVerifier::Pin(verifier) => verifier.verify_signature(verify),
        }
    }
}

/// The embedded-tls crypto provider: a random source and a verifier.
pub struct Provider<'a, Random, Clock: TlsClock> {
    random: Random,
    verifier: TrustVerifier<'a, Clock>,
}

impl<'a, Random: CryptoRngCore, Clock: TlsClock> Provider<'a, Random, Clock> {
    /// A provider that trusts what `trust` says and nothing else.
    pub fn new(random: Random, trust: Trust<'a>) -> Self {
        let verifier = match trust {
            Trust::CaAnchor(certificate) => TrustVerifier::Ca(CertVerifier::new(Certificate::X509(certificate))),
            Trust::PinnedKey(pin) => TrustVerifier::Pin(PinVerifier::new(pin)),
        };
        Self { random, verifier }
    }

    /// Whether this provider needs the wall-clock time (CA anchors check validity dates).
    pub fn needs_time(&self) -> bool {
        matches!(self.verifier, TrustVerifier::Ca(_))
    }
}

impl<Random: CryptoRngCore, Clock: TlsClock> CryptoProvider for Provider<'_, Random, Clock> {
    type CipherSuite = Aes128GcmSha256;
    type Signature = p256::ecdsa::DerSignature;

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut self.random
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Self::CipherSuite>, TlsError> {
        Ok(&mut self.verifier)
    }
}
