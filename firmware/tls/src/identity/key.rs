//! The device's P-256 private key: generated once from the caller's RNG, kept by the caller
//! in its encrypted store as the raw 32-byte big-endian scalar, and used here only to sign the
//! device's own certificate and certificate request. Its public half is exported as a
//! SubjectPublicKeyInfo.
//!
//! Stored form: the raw scalar rather than PKCS#8 DER. The store already encrypts and
//! authenticates it, so PKCS#8's algorithm label adds nothing the storage slot's name does not
//! say; 32 bytes fit any slot; loading needs no DER parser (p256 only checks the range
//! 1..n-1); and it is what the rustls signing key loads (`EcdsaP256SigningKey::from_scalar`).
//!
//! The secret lives in a `p256::SecretKey`, which zeroes itself on drop; the stored form comes
//! back in a [`Zeroizing`] buffer. There is no `Clone` and no `Debug` output of the secret.

use alloc::vec::Vec;

use p256::ecdsa::signature::Signer as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use rand_core::CryptoRngCore;
use zeroize::{Zeroize as _, Zeroizing};

/// The length of the stored key: the raw P-256 scalar.
pub const STORED_KEY_LENGTH: usize = 32;

/// The DER of a P-256 SubjectPublicKeyInfo up to the key: SEQUENCE (89 bytes) { SEQUENCE {
/// id-ecPublicKey, prime256v1 }, BIT STRING (66 bytes, no unused bits) }; the 65-byte
/// uncompressed point follows.
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03,
    0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why a stored key was not loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Not 32 bytes.
    WrongLength,
    /// Zero, or not below the group order: not a P-256 private key.
    OutOfRange,
}

/// The device's private key.
pub struct DeviceKey {
    secret: p256::SecretKey,
}

impl core::fmt::Debug for DeviceKey {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str("DeviceKey { .. }")
    }
}

impl DeviceKey {
    /// A new key from `random` (the board's entropy source), for provisioning.
    pub fn generate(random: &mut impl CryptoRngCore) -> Self {
        Self { secret: p256::SecretKey::random(random) }
    }

    /// The key as it was stored by [`Self::to_stored`].
    pub fn from_stored(stored: &[u8]) -> Result<Self, KeyError> {
        if stored.len() != STORED_KEY_LENGTH {
            return Err(KeyError::WrongLength);
        }
        let secret = p256::SecretKey::from_slice(stored).map_err(|_| KeyError::OutOfRange)?;
        Ok(Self { secret })
    }

    /// The key as the TLS server signs its handshakes with ([`crate::server_config`]).
    pub fn signing_key(&self) -> crate::EcdsaP256SigningKey {
        let mut bytes = self.secret.to_bytes();
        let key = crate::EcdsaP256SigningKey::from_scalar(bytes.as_ref());
        bytes.zeroize();
        // The scalar of a valid `SecretKey` is a valid signing key.
        key.unwrap_or_else(|_| unreachable!("a P-256 secret key is a valid signing scalar"))
    }

    /// The form to store (encrypted): the raw big-endian scalar, zeroed when dropped.
    pub fn to_stored(&self) -> Zeroizing<[u8; STORED_KEY_LENGTH]> {
        let mut stored = Zeroizing::new([0u8; STORED_KEY_LENGTH]);
        let mut bytes = self.secret.to_bytes();
        stored.copy_from_slice(&bytes);
        bytes.zeroize();
        stored
    }

    /// The public key as an uncompressed SEC1 point (65 bytes, `04 || x || y`).
    pub fn public_point(&self) -> [u8; 65] {
        let point = self.secret.public_key().to_encoded_point(false);
        let mut bytes = [0u8; 65];
        bytes.copy_from_slice(point.as_bytes());
        bytes
    }

    /// The public key as a SubjectPublicKeyInfo in DER (91 bytes): what certificates and
    /// requests carry, and what `openssl pkey -pubin -inform der` reads.
    pub fn public_key_der(&self) -> Vec<u8> {
        let mut der = Vec::with_capacity(SPKI_PREFIX.len() + 65);
        der.extend_from_slice(&SPKI_PREFIX);
        der.extend_from_slice(&self.public_point());
        der
    }

    /// Whether `public_key` (a SEC1 point, compressed or not) is this key's public key.
    pub fn has_public_key(&self, public_key: &[u8]) -> bool {
        p256::PublicKey::from_sec1_bytes(public_key).is_ok_and(|other| other == self.secret.public_key())
    }

    /// An ECDSA P-256 signature over SHA-256 of `message` in the fixed-size form JWS ES256
    /// uses (RFC 7518 section 3.4: the 32-byte big-endian `r` then `s`), with the deterministic
    /// nonce of RFC 6979: what the ACME client signs its requests with (the account key is a
    /// `DeviceKey` of its own).
    pub fn sign_fixed(&self, message: &[u8]) -> [u8; 64] {
        let signing = p256::ecdsa::SigningKey::from(&self.secret);
        let signature: p256::ecdsa::Signature = signing.sign(message);
        let mut fixed = [0u8; 64];
        fixed.copy_from_slice(&signature.to_bytes());
        fixed
    }

    /// An ECDSA P-256 signature over SHA-256 of `message`, DER-encoded (ECDSA-Sig-Value), with
    /// the deterministic nonce of RFC 6979.
    pub(crate) fn sign_der(&self, message: &[u8]) -> Vec<u8> {
        let signing = p256::ecdsa::SigningKey::from(&self.secret);
        let signature: p256::ecdsa::Signature = signing.sign(message);
        signature.to_der().as_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips_and_bad_scalars_are_refused() {
        let key = DeviceKey::generate(&mut rand_core::OsRng);
        let stored = key.to_stored();
        let again = DeviceKey::from_stored(&stored[..]).unwrap();
        assert_eq!(again.public_point(), key.public_point());
        assert_eq!(DeviceKey::from_stored(&stored[..31]).unwrap_err(), KeyError::WrongLength);
        assert_eq!(DeviceKey::from_stored(&[0u8; 32]).unwrap_err(), KeyError::OutOfRange);
        assert_eq!(DeviceKey::from_stored(&[0xffu8; 32]).unwrap_err(), KeyError::OutOfRange);
    }

    #[test]
    fn two_generated_keys_differ() {
        let first = DeviceKey::generate(&mut rand_core::OsRng);
        let second = DeviceKey::generate(&mut rand_core::OsRng);
        assert_ne!(first.public_point(), second.public_point());
        assert_ne!(*first.to_stored(), *second.to_stored());
    }

    #[test]
    fn public_key_der_is_a_p256_spki_of_the_key() {
        let key = DeviceKey::generate(&mut rand_core::OsRng);
        let der = key.public_key_der();
        assert_eq!(der.len(), 91);
        let spki = crate::der::expect(&der, crate::der::SEQUENCE).unwrap().0;
        assert_eq!(spki.whole.len(), der.len());
        let point = crate::der::subject_public_key(&spki).unwrap();
        assert!(key.has_public_key(point));
        let other = DeviceKey::generate(&mut rand_core::OsRng);
        assert!(!other.has_public_key(point));
    }

    #[test]
    fn fixed_signatures_verify_and_match_the_der_form() {
        use p256::ecdsa::signature::Verifier as _;
        let key = DeviceKey::generate(&mut rand_core::OsRng);
        let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key.public_point()).unwrap();
        let fixed = key.sign_fixed(b"message");
        let signature = p256::ecdsa::Signature::from_slice(&fixed).unwrap();
        assert!(verifying.verify(b"message", &signature).is_ok());
        assert!(verifying.verify(b"other", &signature).is_err());
        assert_eq!(signature.to_der().as_bytes(), key.sign_der(b"message").as_slice());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let key = DeviceKey::generate(&mut rand_core::OsRng);
        assert_eq!(alloc::format!("{key:?}"), "DeviceKey { .. }");
    }
}
