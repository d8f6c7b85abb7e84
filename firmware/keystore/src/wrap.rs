//! Wrapping the data key: XChaCha20-Poly1305 under the key-encryption key, with a random
//! 24-byte nonce and the record's associated data.
//!
//! A random nonce is safe here: each wrap draws a fresh one (2^-96 collision chance even for
//! billions of wraps), and a new wrap happens only on enrolment, passphrase change and admin
//! key rotation. The cipher instance wipes its key copy when dropped; the plaintext buffer is
//! the [`DataKey`] itself (encrypted in place on a copy that is then ciphertext, or decrypted
//! in place into the caller's `DataKey`, which is wiped when authentication fails).

use crate::secret::{DataKey, KeyEncryptionKey, KEY_LENGTH};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroize;

/// Length of the XChaCha20-Poly1305 nonce.
pub const NONCE_LENGTH: usize = 24;
/// Length of the Poly1305 tag.
pub const TAG_LENGTH: usize = 16;

/// Encrypts `data_key`: returns the wrapped key and its tag.
// Not inlined: the cipher's and the MAC's temporaries (copies of the keys) stay in this
// function's own frame, below the caller's async poll frame, where the caller can wipe
// them (the firmware's `stack::wipe_below`) instead of in a frame that stays live.
#[inline(never)]
pub(crate) fn wrap_data_key(
    key_encryption_key: &KeyEncryptionKey,
    nonce: &[u8; NONCE_LENGTH],
    associated_data: &[u8],
    data_key: &DataKey,
) -> ([u8; KEY_LENGTH], [u8; TAG_LENGTH]) {
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key_encryption_key.bytes()));
    let mut buffer = *data_key.expose_secret();
    match cipher.encrypt_in_place_detached(XNonce::from_slice(nonce), associated_data, &mut buffer)
    {
        Ok(tag) => (buffer, tag.into()),
        Err(_) => {
            // Only reachable for messages beyond 256 GiB; never for 32 bytes.
            buffer.zeroize();
            unreachable!("XChaCha20-Poly1305 encrypts 32 bytes")
        }
    }
}

/// Decrypts and authenticates a wrapped key in place into `data_key`; false (and `data_key`
/// wiped) if anything (key, nonce, associated data, ciphertext, tag) is not what was sealed.
// Not inlined: the cipher's and the MAC's temporaries (copies of the keys) stay in this
// function's own frame, below the caller's async poll frame, where the caller can wipe
// them (the firmware's `stack::wipe_below`) instead of in a frame that stays live.
#[inline(never)]
pub(crate) fn unwrap_data_key(
    key_encryption_key: &KeyEncryptionKey,
    nonce: &[u8; NONCE_LENGTH],
    associated_data: &[u8],
    wrapped_data_key: &[u8; KEY_LENGTH],
    tag: &[u8; TAG_LENGTH],
    data_key: &mut DataKey,
) -> bool {
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key_encryption_key.bytes()));
    data_key.bytes_mut().copy_from_slice(wrapped_data_key);
    let result = cipher.decrypt_in_place_detached(
        XNonce::from_slice(nonce),
        associated_data,
        data_key.bytes_mut(),
        Tag::from_slice(tag),
    );
    if result.is_err() {
        data_key.wipe();
    }
    result.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::hex;

    /// draft-irtf-cfrg-xchacha-03 Appendix A.3.1: the primitive as used here.
    #[test]
    fn xchacha20_poly1305_draft_vector() {
        let key: [u8; 32] = core::array::from_fn(|index| 0x80 + index as u8);
        let nonce: [u8; 24] = core::array::from_fn(|index| 0x40 + index as u8);
        let associated = hex("50515253c0c1c2c3c4c5c6c7");
        let mut message = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec();
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&key));
        let tag = cipher
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), &associated, &mut message)
            .unwrap();
        assert_eq!(
            message,
            hex("bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb\
                 731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452\
                 2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9\
                 21f9664c97637da9768812f615c68b13b52e")
        );
        assert_eq!(tag.to_vec(), hex("c0875924c1c7987947deafd8780acf49"));
    }

    /// Our wrap of the draft's key/nonce/associated data over a 32-byte data key: the first
    /// 32 bytes of the keystream are the draft vector's ciphertext XOR its plaintext.
    #[test]
    fn wrap_vector_and_round_trip() {
        let key = KeyEncryptionKey::from_bytes(core::array::from_fn(|index| 0x80 + index as u8));
        let nonce: [u8; 24] = core::array::from_fn(|index| 0x40 + index as u8);
        let data_key = DataKey::from_bytes([0u8; 32]);
        let (wrapped, tag) = wrap_data_key(&key, &nonce, b"ad", &data_key);
        // Plaintext of zeros: the wrapped key is the keystream (starts at block counter 1).
        let expected_keystream: Vec<u8> = hex("bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb")
            .iter()
            .zip(b"Ladies and Gentlemen of the class of '99".iter())
            .map(|(cipher, plain)| cipher ^ plain)
            .collect();
        assert_eq!(wrapped.to_vec(), expected_keystream);
        let mut unwrapped = DataKey::zeroed();
        assert!(unwrap_data_key(&key, &nonce, b"ad", &wrapped, &tag, &mut unwrapped));
        assert_eq!(unwrapped.expose_secret(), data_key.expose_secret());
    }

    /// Unwraps into a key that starts non-zero: a failed unwrap must leave it all zeros.
    fn unwrap(key: &KeyEncryptionKey, nonce: &[u8; NONCE_LENGTH], associated: &[u8], wrapped: &[u8; KEY_LENGTH], tag: &[u8; TAG_LENGTH]) -> bool {
        let mut data_key = DataKey::from_bytes([0xEE; 32]);
        let unwrapped = unwrap_data_key(key, nonce, associated, wrapped, tag, &mut data_key);
        assert_eq!(unwrapped, data_key.expose_secret() == &[0x5A; 32], "the key is the plaintext or wiped");
        if !unwrapped {
            assert_eq!(data_key.expose_secret(), &[0u8; 32], "a failed unwrap leaves nothing behind");
        }
        unwrapped
    }

    #[test]
    fn unwrap_fails_closed_on_any_change() {
        let key = KeyEncryptionKey::from_bytes([9; 32]);
        let nonce = [7u8; 24];
        let data_key = DataKey::from_bytes([0x5A; 32]);
        let (wrapped, tag) = wrap_data_key(&key, &nonce, b"associated", &data_key);
        assert!(unwrap(&key, &nonce, b"associated", &wrapped, &tag));
        assert!(!unwrap(&key, &nonce, b"associateD", &wrapped, &tag));
        let other_key = KeyEncryptionKey::from_bytes([8; 32]);
        assert!(!unwrap(&other_key, &nonce, b"associated", &wrapped, &tag));
        let mut other_nonce = nonce;
        other_nonce[23] ^= 1;
        assert!(!unwrap(&key, &other_nonce, b"associated", &wrapped, &tag));
        for bit in 0..256 {
            let mut damaged = wrapped;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(!unwrap(&key, &nonce, b"associated", &damaged, &tag));
        }
        for bit in 0..128 {
            let mut damaged = tag;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(!unwrap(&key, &nonce, b"associated", &wrapped, &damaged));
        }
    }
}
