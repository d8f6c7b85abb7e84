//! The rustls crypto provider of the appliance, assembled from RustCrypto crates: TLS 1.3
//! suites (ChaCha20-Poly1305 first, then AES-128-GCM and AES-256-GCM), X25519 and P-256 key
//! exchange, the signature checks of [`signature`], and the appliance's random source.
//!
//! No private keys are loaded yet (the client authenticates with AUTH inside TLS, not with a
//! certificate): [`CryptoProvider::key_provider`] refuses every key.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;

use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::crypto::{CipherSuiteCommon, CryptoProvider, KeyProvider, SecureRandom};
use rustls::pki_types::PrivateKeyDer;
use rustls::{CipherSuite, SupportedCipherSuite, Tls13CipherSuite};

pub mod aead;
pub mod hash;
pub mod key_exchange;
pub mod random;
pub mod signature;

/// TLS_CHACHA20_POLY1305_SHA256.
pub static TLS13_CHACHA20_POLY1305_SHA256: SupportedCipherSuite = SupportedCipherSuite::Tls13(&Tls13CipherSuite {
    common: CipherSuiteCommon {
        suite: CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        hash_provider: &hash::SHA256,
        confidentiality_limit: u64::MAX,
    },
    hkdf_provider: &HkdfUsingHmac(&hash::HMAC_SHA256),
    aead_alg: &aead::CHACHA20_POLY1305,
    quic: None,
});

/// TLS_AES_128_GCM_SHA256.
pub static TLS13_AES_128_GCM_SHA256: SupportedCipherSuite = SupportedCipherSuite::Tls13(&Tls13CipherSuite {
    common: CipherSuiteCommon {
        suite: CipherSuite::TLS13_AES_128_GCM_SHA256,
        hash_provider: &hash::SHA256,
        // RFC 8446 5.5 / AEAD limits: 2^24.5 full records per key for AES-GCM.
        confidentiality_limit: 1 << 24,
    },
    hkdf_provider: &HkdfUsingHmac(&hash::HMAC_SHA256),
    aead_alg: &aead::AES_128_GCM,
    quic: None,
});

/// TLS_AES_256_GCM_SHA384.
pub static TLS13_AES_256_GCM_SHA384: SupportedCipherSuite = SupportedCipherSuite::Tls13(&Tls13CipherSuite {
    common: CipherSuiteCommon {
        suite: CipherSuite::TLS13_AES_256_GCM_SHA384,
        hash_provider: &hash::SHA384,
        confidentiality_limit: 1 << 24,
    },
    hkdf_provider: &HkdfUsingHmac(&hash::HMAC_SHA384),
    aead_alg: &aead::AES_256_GCM,
    quic: None,
});

/// The provider over `random`. Call once and share the `Arc`: the key-exchange groups are
/// allocated once and live as long as the program (two small structs).
pub fn provider(random: &'static dyn SecureRandom) -> Arc<CryptoProvider> {
    let x25519: &'static key_exchange::X25519 = Box::leak(Box::new(key_exchange::X25519 { random }));
    let p256: &'static key_exchange::P256 = Box::leak(Box::new(key_exchange::P256 { random }));
    Arc::new(CryptoProvider {
        cipher_suites: vec![TLS13_CHACHA20_POLY1305_SHA256, TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384],
        kx_groups: vec![x25519, p256],
        signature_verification_algorithms: signature::ALGORITHMS,
        secure_random: random,
        key_provider: &NoKeys,
    })
}

/// Loads no private keys: the appliance's TLS clients present no certificate.
#[derive(Debug)]
struct NoKeys;

impl KeyProvider for NoKeys {
    fn load_private_key(&self, _key: PrivateKeyDer<'static>) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        Err(rustls::Error::General("this provider loads no private keys".into()))
    }
}
