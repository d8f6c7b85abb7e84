//! The rustls crypto provider of the appliance, assembled from RustCrypto crates: TLS 1.3
//! suites (ChaCha20-Poly1305 first, then AES-128-GCM and AES-256-GCM), then the TLS 1.2 ECDHE
//! suites with the same AEADs (ECDSA and RSA authentication; no CBC, no RSA key transport, no
//! suite without forward secrecy), X25519 and P-256 key exchange, the signature checks of
//! [`signature`], the appliance's random source, and ECDSA P-256 private keys ([`signing`]:
//! every other kind of key is refused).
//!
//! Which versions a connection may use is the configuration's choice ([`crate::trust`] for
//! clients, [`crate::server`] for the server), not the provider's.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;

use rustls::crypto::tls12::PrfUsingHmac;
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::crypto::{CipherSuiteCommon, CryptoProvider, KeyExchangeAlgorithm, SecureRandom};
use rustls::{CipherSuite, SignatureScheme, SupportedCipherSuite, Tls12CipherSuite, Tls13CipherSuite};

pub mod aead;
pub mod hash;
pub mod key_exchange;
pub mod random;
pub mod signature;
pub mod signing;
pub mod tls12;

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

/// The signature schemes of a TLS 1.2 ECDHE_ECDSA suite's ServerKeyExchange, in preference
/// order: those [`signature::ALGORITHMS`] can check.
static TLS12_ECDSA_SCHEMES: &[SignatureScheme] =
    &[SignatureScheme::ED25519, SignatureScheme::ECDSA_NISTP384_SHA384, SignatureScheme::ECDSA_NISTP256_SHA256];

/// The same for ECDHE_RSA: PSS first, then PKCS#1 v1.5.
static TLS12_RSA_SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA512,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA256,
];

/// One TLS 1.2 ECDHE + AEAD suite.
macro_rules! tls12_suite {
    ($name:ident, $suite:ident, $hash:ident, $hmac:ident, $aead:path, $schemes:ident, $limit:expr) => {
        #[doc = concat!("TLS 1.2 ", stringify!($suite), ".")]
        pub static $name: SupportedCipherSuite = SupportedCipherSuite::Tls12(&Tls12CipherSuite {
            common: CipherSuiteCommon { suite: CipherSuite::$suite, hash_provider: &hash::$hash, confidentiality_limit: $limit },
            prf_provider: &PrfUsingHmac(&hash::$hmac),
            kx: KeyExchangeAlgorithm::ECDHE,
            sign: $schemes,
            aead_alg: &$aead,
        });
    };
}

tls12_suite!(TLS12_ECDHE_ECDSA_CHACHA20_POLY1305, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, SHA256, HMAC_SHA256, tls12::CHACHA20_POLY1305, TLS12_ECDSA_SCHEMES, u64::MAX);
tls12_suite!(TLS12_ECDHE_RSA_CHACHA20_POLY1305, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, SHA256, HMAC_SHA256, tls12::CHACHA20_POLY1305, TLS12_RSA_SCHEMES, u64::MAX);
tls12_suite!(TLS12_ECDHE_ECDSA_AES_128_GCM, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, SHA256, HMAC_SHA256, tls12::AES_128_GCM, TLS12_ECDSA_SCHEMES, 1 << 24);
tls12_suite!(TLS12_ECDHE_RSA_AES_128_GCM, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, SHA256, HMAC_SHA256, tls12::AES_128_GCM, TLS12_RSA_SCHEMES, 1 << 24);
tls12_suite!(TLS12_ECDHE_ECDSA_AES_256_GCM, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, SHA384, HMAC_SHA384, tls12::AES_256_GCM, TLS12_ECDSA_SCHEMES, 1 << 24);
tls12_suite!(TLS12_ECDHE_RSA_AES_256_GCM, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, SHA384, HMAC_SHA384, tls12::AES_256_GCM, TLS12_RSA_SCHEMES, 1 << 24);

/// Every suite, in the order a server prefers them: TLS 1.3 before TLS 1.2, ChaCha20-Poly1305
/// before AES-GCM within each version.
pub static CIPHER_SUITES: [SupportedCipherSuite; 9] = [
    TLS13_CHACHA20_POLY1305_SHA256,
    TLS13_AES_128_GCM_SHA256,
    TLS13_AES_256_GCM_SHA384,
    TLS12_ECDHE_ECDSA_CHACHA20_POLY1305,
    TLS12_ECDHE_RSA_CHACHA20_POLY1305,
    TLS12_ECDHE_ECDSA_AES_128_GCM,
    TLS12_ECDHE_RSA_AES_128_GCM,
    TLS12_ECDHE_ECDSA_AES_256_GCM,
    TLS12_ECDHE_RSA_AES_256_GCM,
];

/// The provider over `random`. Call once and share the `Arc`: the key-exchange groups are
/// allocated once and live as long as the program (two small structs).
pub fn provider(random: &'static dyn SecureRandom) -> Arc<CryptoProvider> {
    let x25519: &'static key_exchange::X25519 = Box::leak(Box::new(key_exchange::X25519 { random }));
    let p256: &'static key_exchange::P256 = Box::leak(Box::new(key_exchange::P256 { random }));
    Arc::new(CryptoProvider {
        cipher_suites: CIPHER_SUITES.to_vec(),
        kx_groups: vec![x25519, p256],
        signature_verification_algorithms: signature::ALGORITHMS,
        secure_random: random,
        key_provider: &signing::P256Keys,
    })
}
