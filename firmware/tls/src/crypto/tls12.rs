//! TLS 1.2 record protection for the ECDHE + AEAD suites, and nothing else (no CBC, no RSA key
//! transport, no static DH: every TLS 1.2 suite here is forward-secret and authenticated
//! encryption). The key block is cut and the PRF run by rustls ([`rustls::crypto::tls12::PrfUsingHmac`]
//! over [`super::hash`]); this module turns key and IV into record ciphers:
//!
//! - AES-GCM (RFC 5288): the nonce is the 4-octet implicit salt from the key block followed by
//!   an 8-octet explicit part sent in front of each record. The explicit part is the sequence
//!   number XOR 8 further key-block octets (rustls's `explicit_nonce_len`), never repeated under
//!   one key, as RFC 5288 3 requires.
//! - ChaCha20-Poly1305 (RFC 7905 2): the 12-octet IV from the key block XOR the 64-bit
//!   sequence number, nothing explicit on the wire.
//!
//! The additional data is RFC 5246 6.2.3.3's: sequence number, content type, version, and the
//! plaintext length. Called by rustls; calls the RustCrypto AEADs.

use alloc::boxed::Box;

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use rustls::crypto::cipher::{
    make_tls12_aad, AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv, KeyBlockShape, MessageDecrypter, MessageEncrypter, Nonce,
    OutboundOpaqueMessage, OutboundPlainMessage, PrefixedPayload, Tls12AeadAlgorithm, UnsupportedOperationError, NONCE_LEN,
};
use rustls::ConnectionTrafficSecrets;

use super::aead::{DecryptBuffer, EncryptBuffer, TAG_LENGTH};

/// The explicit nonce octets in front of every AES-GCM record (RFC 5288 3).
const GCM_EXPLICIT_NONCE: usize = 8;
/// The implicit salt of AES-GCM from the key block.
const GCM_SALT: usize = 4;
/// Largest plaintext of one record (RFC 5246 6.2.1).
const MAXIMUM_FRAGMENT: usize = 16_384;

/// AES-GCM under TLS 1.2 (RFC 5288).
pub struct Gcm<C> {
    key_length: usize,
    secrets: fn(AeadKey, Iv) -> ConnectionTrafficSecrets,
    cipher: core::marker::PhantomData<C>,
}

// Stateless marker types: sharing the statics is safe.
unsafe impl<C> Sync for Gcm<C> {}
unsafe impl<C> Send for Gcm<C> {}

/// AES-128-GCM.
pub static AES_128_GCM: Gcm<aes_gcm::Aes128Gcm> = Gcm {
    key_length: 16,
    secrets: |key, iv| ConnectionTrafficSecrets::Aes128Gcm { key, iv },
    cipher: core::marker::PhantomData,
};
/// AES-256-GCM.
pub static AES_256_GCM: Gcm<aes_gcm::Aes256Gcm> = Gcm {
    key_length: 32,
    secrets: |key, iv| ConnectionTrafficSecrets::Aes256Gcm { key, iv },
    cipher: core::marker::PhantomData,
};

/// ChaCha20-Poly1305 under TLS 1.2 (RFC 7905).
pub struct ChaCha20Poly1305;

/// ChaCha20-Poly1305.
pub static CHACHA20_POLY1305: ChaCha20Poly1305 = ChaCha20Poly1305;

/// salt ‖ explicit: the starting nonce of the sender; the sequence number is XORed into its last
/// 8 octets for each record, so the explicit part on the wire is unique per record.
fn gcm_iv(salt: &[u8], explicit: &[u8]) -> Iv {
    let mut iv = [0u8; NONCE_LEN];
    iv[..GCM_SALT].copy_from_slice(salt);
    iv[GCM_SALT..].copy_from_slice(explicit);
    Iv::new(iv)
}

fn new_cipher<C: KeyInit>(key: &AeadKey) -> C {
    C::new_from_slice(key.as_ref()).expect("rustls derives keys of enc_key_len")
}

impl<C: KeyInit + AeadInPlace + Send + Sync + 'static> Tls12AeadAlgorithm for Gcm<C> {
    fn encrypter(&self, key: AeadKey, iv: &[u8], extra: &[u8]) -> Box<dyn MessageEncrypter> {
        Box::new(GcmEncrypter { cipher: new_cipher::<C>(&key), iv: gcm_iv(iv, extra) })
    }

    fn decrypter(&self, key: AeadKey, iv: &[u8]) -> Box<dyn MessageDecrypter> {
        let mut salt = [0u8; GCM_SALT];
        salt.copy_from_slice(iv);
        Box::new(GcmDecrypter { cipher: new_cipher::<C>(&key), salt })
    }

    fn key_block_shape(&self) -> KeyBlockShape {
        KeyBlockShape { enc_key_len: self.key_length, fixed_iv_len: GCM_SALT, explicit_nonce_len: GCM_EXPLICIT_NONCE }
    }

    fn extract_keys(&self, key: AeadKey, iv: &[u8], explicit: &[u8]) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        Ok((self.secrets)(key, gcm_iv(iv, explicit)))
    }
}

struct GcmEncrypter<C> {
    cipher: C,
    iv: Iv,
}

impl<C: AeadInPlace + Send + Sync> MessageEncrypter for GcmEncrypter<C> {
    fn encrypt(&mut self, message: OutboundPlainMessage<'_>, sequence: u64) -> Result<OutboundOpaqueMessage, rustls::Error> {
        let total_length = self.encrypted_payload_len(message.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_length);
        let nonce = Nonce::new(&self.iv, sequence).0;
        let additional_data = make_tls12_aad(sequence, message.typ, message.version, message.payload.len());
        payload.extend_from_slice(&nonce[GCM_SALT..]);
        payload.extend_from_chunks(&message.payload);
        let tag = self
            .cipher
            .encrypt_in_place_detached(GenericArray::from_slice(&nonce), &additional_data, &mut payload.as_mut()[GCM_EXPLICIT_NONCE..])
            .map_err(|_| rustls::Error::EncryptError)?;
        payload.extend_from_slice(&tag);
        Ok(OutboundOpaqueMessage::new(message.typ, message.version, payload))
    }

    fn encrypted_payload_len(&self, payload_length: usize) -> usize {
        payload_length + GCM_EXPLICIT_NONCE + TAG_LENGTH
    }
}

struct GcmDecrypter<C> {
    cipher: C,
    salt: [u8; GCM_SALT],
}

impl<C: AeadInPlace + Send + Sync> MessageDecrypter for GcmDecrypter<C> {
    fn decrypt<'a>(&mut self, mut message: InboundOpaqueMessage<'a>, sequence: u64) -> Result<InboundPlainMessage<'a>, rustls::Error> {
        let payload = &mut message.payload;
        if payload.len() < GCM_EXPLICIT_NONCE + TAG_LENGTH {
            return Err(rustls::Error::DecryptError);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..GCM_SALT].copy_from_slice(&self.salt);
        nonce[GCM_SALT..].copy_from_slice(&payload[..GCM_EXPLICIT_NONCE]);
        let plaintext_length = payload.len() - GCM_EXPLICIT_NONCE - TAG_LENGTH;
        let additional_data = make_tls12_aad(sequence, message.typ, message.version, plaintext_length);
        let (body, tag) = payload[GCM_EXPLICIT_NONCE..].split_at_mut(plaintext_length);
        self.cipher
            .decrypt_in_place_detached(GenericArray::from_slice(&nonce), &additional_data, body, GenericArray::from_slice(tag))
            .map_err(|_| rustls::Error::DecryptError)?;
        if plaintext_length > MAXIMUM_FRAGMENT {
            return Err(rustls::Error::PeerSentOversizedRecord);
        }
        // The plaintext moves to the front, over the explicit nonce.
        payload.copy_within(GCM_EXPLICIT_NONCE..GCM_EXPLICIT_NONCE + plaintext_length, 0);
        payload.truncate(plaintext_length);
        Ok(message.into_plain_message())
    }
}

impl Tls12AeadAlgorithm for ChaCha20Poly1305 {
    fn encrypter(&self, key: AeadKey, iv: &[u8], _extra: &[u8]) -> Box<dyn MessageEncrypter> {
        Box::new(ChaChaCipher { cipher: new_cipher::<chacha20poly1305::ChaCha20Poly1305>(&key), iv: Iv::copy(iv) })
    }

    fn decrypter(&self, key: AeadKey, iv: &[u8]) -> Box<dyn MessageDecrypter> {
        Box::new(ChaChaCipher { cipher: new_cipher::<chacha20poly1305::ChaCha20Poly1305>(&key), iv: Iv::copy(iv) })
    }

    fn key_block_shape(&self) -> KeyBlockShape {
        KeyBlockShape { enc_key_len: 32, fixed_iv_len: NONCE_LEN, explicit_nonce_len: 0 }
    }

    fn extract_keys(&self, key: AeadKey, iv: &[u8], _explicit: &[u8]) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        Ok(ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv: Iv::copy(iv) })
    }
}

struct ChaChaCipher {
    cipher: chacha20poly1305::ChaCha20Poly1305,
    iv: Iv,
}

impl MessageEncrypter for ChaChaCipher {
    fn encrypt(&mut self, message: OutboundPlainMessage<'_>, sequence: u64) -> Result<OutboundOpaqueMessage, rustls::Error> {
        let total_length = self.encrypted_payload_len(message.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_length);
        let nonce = Nonce::new(&self.iv, sequence).0;
        let additional_data = make_tls12_aad(sequence, message.typ, message.version, message.payload.len());
        payload.extend_from_chunks(&message.payload);
        self.cipher
            .encrypt_in_place(GenericArray::from_slice(&nonce), &additional_data, &mut EncryptBuffer(&mut payload))
            .map_err(|_| rustls::Error::EncryptError)?;
        Ok(OutboundOpaqueMessage::new(message.typ, message.version, payload))
    }

    fn encrypted_payload_len(&self, payload_length: usize) -> usize {
        payload_length + TAG_LENGTH
    }
}

impl MessageDecrypter for ChaChaCipher {
    fn decrypt<'a>(&mut self, mut message: InboundOpaqueMessage<'a>, sequence: u64) -> Result<InboundPlainMessage<'a>, rustls::Error> {
        let payload = &mut message.payload;
        if payload.len() < TAG_LENGTH {
            return Err(rustls::Error::DecryptError);
        }
        let nonce = Nonce::new(&self.iv, sequence).0;
        let additional_data = make_tls12_aad(sequence, message.typ, message.version, payload.len() - TAG_LENGTH);
        self.cipher
            .decrypt_in_place(GenericArray::from_slice(&nonce), &additional_data, &mut DecryptBuffer(payload))
            .map_err(|_| rustls::Error::DecryptError)?;
        if payload.len() > MAXIMUM_FRAGMENT {
            return Err(rustls::Error::PeerSentOversizedRecord);
        }
        Ok(message.into_plain_message())
    }
}

#[cfg(test)]
mod tests {
    use aes_gcm::aead::{Aead as _, Payload};
    use rustls::crypto::cipher::OutboundChunks;
    use rustls::{ContentType, ProtocolVersion};

    use super::*;

    fn seal(encrypter: &mut dyn MessageEncrypter, sequence: u64, data: &[u8]) -> alloc::vec::Vec<u8> {
        let message = OutboundPlainMessage { typ: ContentType::ApplicationData, version: ProtocolVersion::TLSv1_2, payload: OutboundChunks::Single(data) };
        encrypter.encrypt(message, sequence).unwrap().encode()
    }

    fn open(decrypter: &mut dyn MessageDecrypter, sequence: u64, record: &[u8]) -> Result<alloc::vec::Vec<u8>, rustls::Error> {
        let mut payload = record[5..].to_vec();
        let message = InboundOpaqueMessage::new(ContentType::ApplicationData, ProtocolVersion::TLSv1_2, &mut payload);
        decrypter.decrypt(message, sequence).map(|plain| plain.payload.to_vec())
    }

    /// RFC 5246 6.2.3.3: seq_num ‖ type ‖ version ‖ length.
    fn additional_data(sequence: u64, length: u16) -> [u8; 13] {
        let mut data = [0u8; 13];
        data[..8].copy_from_slice(&sequence.to_be_bytes());
        data[8] = 23;
        data[9..11].copy_from_slice(&[3, 3]);
        data[11..].copy_from_slice(&length.to_be_bytes());
        data
    }

    /// RFC 5288: the explicit nonce on the wire differs for every record (never reused under a
    /// key), salt ‖ explicit is the nonce, and an independent AES-GCM opens the record.
    #[test]
    fn gcm_records_follow_rfc5288() {
        let (key, salt, extra) = ([7u8; 32], [1u8, 2, 3, 4], [9u8; 8]);
        let mut encrypter = AES_256_GCM.encrypter(AeadKey::from(key), &salt, &extra);
        let first = seal(&mut *encrypter, 0, b"hello");
        let second = seal(&mut *encrypter, 1, b"hello");
        assert_eq!(first.len(), 5 + 8 + 5 + 16);
        assert_eq!(first[5..13], extra, "sequence 0: the explicit part is the key block's");
        assert_eq!(second[5..13], [9, 9, 9, 9, 9, 9, 9, 8], "sequence 1: XORed in");
        assert_ne!(first[13..], second[13..]);
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&salt);
        nonce[4..].copy_from_slice(&second[5..13]);
        let independent = aes_gcm::Aes256Gcm::new_from_slice(&key).unwrap();
        let plain = independent.decrypt(GenericArray::from_slice(&nonce), Payload { msg: &second[13..], aad: &additional_data(1, 5) }).unwrap();
        assert_eq!(plain, b"hello");
        let mut decrypter = AES_256_GCM.decrypter(AeadKey::from(key), &salt);
        assert_eq!(open(&mut *decrypter, 1, &second).unwrap(), b"hello");
        assert_eq!(open(&mut *decrypter, 0, &second), Err(rustls::Error::DecryptError), "another sequence number");
        assert_eq!(open(&mut *decrypter, 1, &second[..20]), Err(rustls::Error::DecryptError), "shorter than nonce and tag");
    }

    /// RFC 7905: nothing explicit on the wire, the nonce is the IV XOR the sequence number, and
    /// an independent ChaCha20-Poly1305 opens the record.
    #[test]
    fn chacha_records_follow_rfc7905() {
        let (key, iv) = ([7u8; 32], [0x11u8; 12]);
        let mut encrypter = CHACHA20_POLY1305.encrypter(AeadKey::from(key), &iv, &[]);
        let record = seal(&mut *encrypter, 5, b"hello");
        assert_eq!(record.len(), 5 + 5 + 16);
        let mut nonce = iv;
        nonce[11] ^= 5;
        let independent = chacha20poly1305::ChaCha20Poly1305::new_from_slice(&key).unwrap();
        let plain = independent.decrypt(GenericArray::from_slice(&nonce), Payload { msg: &record[5..], aad: &additional_data(5, 5) }).unwrap();
        assert_eq!(plain, b"hello");
        let mut decrypter = CHACHA20_POLY1305.decrypter(AeadKey::from(key), &iv);
        assert_eq!(open(&mut *decrypter, 5, &record).unwrap(), b"hello");
        assert_eq!(open(&mut *decrypter, 4, &record), Err(rustls::Error::DecryptError));
    }
}
