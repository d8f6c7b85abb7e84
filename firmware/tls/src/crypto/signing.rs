//! The appliance's own signatures: an ECDSA P-256 private key (the device's TLS identity) as a
//! rustls [`SigningKey`], signing TLS 1.3 CertificateVerify and TLS 1.2 ServerKeyExchange with
//! ECDSA_NISTP256_SHA256 (deterministic nonces, RFC 6979: no randomness needed, none to fail),
//! and the provider's [`KeyProvider`] that loads P-256 keys (PKCS#8 or SEC1 DER) and refuses
//! every other kind.
//!
//! The secret scalar lives once, behind an `Arc`, and is zeroed when the last holder drops it
//! (p256's `SigningKey` zeroizes on drop); the DER a key was loaded from is zeroed after parsing.
//! Called by rustls; calls only RustCrypto `p256`.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::DecodePrivateKey as _;
use rustls::crypto::KeyProvider;
use rustls::pki_types::{alg_id, PrivateKeyDer, SubjectPublicKeyInfoDer};
use rustls::sign::{public_key_to_spki, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use zeroize::Zeroize as _;

/// Why a private key was not loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Not a P-256 key in PKCS#8 or SEC1 DER (another curve, RSA, Ed25519, or unreadable).
    NotP256,
    /// The scalar is zero or not below the group order.
    InvalidScalar,
}

impl KeyError {
    /// A short explanation for the owner's log.
    pub fn describe(self) -> &'static str {
        match self {
            KeyError::NotP256 => "only ECDSA P-256 private keys (PKCS#8 or SEC1 DER) are supported",
            KeyError::InvalidScalar => "the P-256 private scalar is out of range",
        }
    }
}

/// An ECDSA P-256 private key for rustls; cloning shares the one copy of the secret.
#[derive(Clone)]
pub struct EcdsaP256SigningKey {
    key: Arc<p256::ecdsa::SigningKey>,
    /// The SubjectPublicKeyInfo, computed once (a scalar multiplication): rustls compares it
    /// with the certificate's to catch a chain that does not belong to the key.
    public_key: SubjectPublicKeyInfoDer<'static>,
}

impl core::fmt::Debug for EcdsaP256SigningKey {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str("EcdsaP256SigningKey { .. }")
    }
}

impl EcdsaP256SigningKey {
    /// The key of a raw 32-byte big-endian scalar (as generated on the device). The caller
    /// keeps, and should zero, its own copy.
    pub fn from_scalar(scalar: &[u8; 32]) -> Result<Self, KeyError> {
        let key = p256::ecdsa::SigningKey::from_bytes(p256::FieldBytes::from_slice(scalar)).map_err(|_| KeyError::InvalidScalar)?;
        Ok(Self::from_key(key))
    }

    /// The key of a PKCS#8 `PrivateKeyInfo` (`-----BEGIN PRIVATE KEY-----`, what `openssl
    /// genpkey` writes) for P-256.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let secret = p256::SecretKey::from_pkcs8_der(der).map_err(|_| KeyError::NotP256)?;
        Ok(Self::from_key(p256::ecdsa::SigningKey::from(&secret)))
    }

    /// The key of a SEC1 `ECPrivateKey` (`-----BEGIN EC PRIVATE KEY-----`) for P-256.
    pub fn from_sec1_der(der: &[u8]) -> Result<Self, KeyError> {
        let secret = p256::SecretKey::from_sec1_der(der).map_err(|_| KeyError::NotP256)?;
        Ok(Self::from_key(p256::ecdsa::SigningKey::from(&secret)))
    }

    /// The key of whatever rustls was given, if it is a P-256 key.
    pub fn from_der(der: &PrivateKeyDer<'_>) -> Result<Self, KeyError> {
        match der {
            PrivateKeyDer::Pkcs8(pkcs8) => Self::from_pkcs8_der(pkcs8.secret_pkcs8_der()),
            PrivateKeyDer::Sec1(sec1) => Self::from_sec1_der(sec1.secret_sec1_der()),
            _ => Err(KeyError::NotP256),
        }
    }

    fn from_key(key: p256::ecdsa::SigningKey) -> Self {
        let point = key.verifying_key().to_encoded_point(false);
        let public_key = public_key_to_spki(&alg_id::ECDSA_P256, point.as_bytes());
        Self { key: Arc::new(key), public_key }
    }

    /// The uncompressed SEC1 public point (65 octets).
    pub fn public_point(&self) -> [u8; 65] {
        let mut point = [0u8; 65];
        point.copy_from_slice(self.key.verifying_key().to_encoded_point(false).as_bytes());
        point
    }
}

impl SigningKey for EcdsaP256SigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.contains(&SignatureScheme::ECDSA_NISTP256_SHA256).then(|| Box::new(self.clone()) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(self.public_key.clone())
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

impl Signer for EcdsaP256SigningKey {
    /// ECDSA over SHA-256 of `message`, DER-encoded (r, s), as TLS carries it.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let signature: p256::ecdsa::Signature = self.key.sign(message);
        Ok(signature.to_der().as_bytes().to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

/// The provider's key loader: P-256 keys only.
#[derive(Debug)]
pub struct P256Keys;

impl KeyProvider for P256Keys {
    fn load_private_key(&self, key: PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, rustls::Error> {
        let mut key = key;
        let loaded = EcdsaP256SigningKey::from_der(&key);
        key.zeroize();
        match loaded {
            Ok(signing_key) => Ok(Arc::new(signing_key)),
            Err(error) => Err(rustls::Error::General(error.describe().into())),
        }
    }
}
