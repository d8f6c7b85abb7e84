//! The TLS 1.3 record ciphers (TLS 1.2's are in [`super::tls12`]): ChaCha20-Poly1305 (cheap in software: ~46 instructions per byte
//! on a Cortex-M, against AES-GCM's ~226), AES-128-GCM (the suite every TLS 1.3 peer must
//! offer, RFC 8446 9.1) and AES-256-GCM, all RustCrypto.

use alloc::boxed::Box;

use aes_gcm::aead::{AeadInPlace, Buffer, KeyInit};
use rustls::crypto::cipher::{
    make_tls13_aad, AeadKey, BorrowedPayload, InboundOpaqueMessage, InboundPlainMessage, Iv, MessageDecrypter,
    MessageEncrypter, Nonce, OutboundOpaqueMessage, OutboundPlainMessage, PrefixedPayload, Tls13AeadAlgorithm,
    UnsupportedOperationError,
};
use rustls::{ConnectionTrafficSecrets, ContentType, ProtocolVersion};

/// The authentication tag of every AEAD here.
pub(crate) const TAG_LENGTH: usize = 16;

/// One TLS 1.3 AEAD over a RustCrypto cipher type.
pub struct Aead<C> {
    key_length: usize,
    secrets: fn(AeadKey, Iv) -> ConnectionTrafficSecrets,
    cipher: core::marker::PhantomData<C>,
}

unsafe impl<C> Sync for Aead<C> {}
unsafe impl<C> Send for Aead<C> {}

/// ChaCha20-Poly1305.
pub static CHACHA20_POLY1305: Aead<chacha20poly1305::ChaCha20Poly1305> = Aead {
    key_length: 32,
    secrets: |key, iv| ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv },
    cipher: core::marker::PhantomData,
};
/// AES-128-GCM.
pub static AES_128_GCM: Aead<aes_gcm::Aes128Gcm> = Aead {
    key_length: 16,
    secrets: |key, iv| ConnectionTrafficSecrets::Aes128Gcm { key, iv },
    cipher: core::marker::PhantomData,
};
/// AES-256-GCM.
pub static AES_256_GCM: Aead<aes_gcm::Aes256Gcm> = Aead {
    key_length: 32,
    secrets: |key, iv| ConnectionTrafficSecrets::Aes256Gcm { key, iv },
    cipher: core::marker::PhantomData,
};

impl<C: KeyInit + AeadInPlace + Send + Sync + 'static> Tls13AeadAlgorithm for Aead<C> {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Cipher(C::new_from_slice(key.as_ref()).expect("rustls derives keys of key_len"), iv))
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Cipher(C::new_from_slice(key.as_ref()).expect("rustls derives keys of key_len"), iv))
    }

    fn key_len(&self) -> usize {
        self.key_length
    }

    fn extract_keys(&self, key: AeadKey, iv: Iv) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        Ok((self.secrets)(key, iv))
    }
}

struct Cipher<C>(C, Iv);

impl<C: AeadInPlace + Send + Sync> MessageEncrypter for Cipher<C> {
    fn encrypt(&mut self, message: OutboundPlainMessage<'_>, sequence: u64) -> Result<OutboundOpaqueMessage, rustls::Error> {
        let total_length = self.encrypted_payload_len(message.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_length);
        payload.extend_from_chunks(&message.payload);
        payload.extend_from_slice(&message.typ.to_array());
        let nonce = Nonce::new(&self.1, sequence).0;
        let additional_data = make_tls13_aad(total_length);
        self.0
            .encrypt_in_place(aes_gcm::aead::generic_array::GenericArray::from_slice(&nonce), &additional_data, &mut EncryptBuffer(&mut payload))
            .map_err(|_| rustls::Error::EncryptError)?;
        Ok(OutboundOpaqueMessage::new(ContentType::ApplicationData, ProtocolVersion::TLSv1_2, payload))
    }

    fn encrypted_payload_len(&self, payload_length: usize) -> usize {
        payload_length + 1 + TAG_LENGTH
    }
}

impl<C: AeadInPlace + Send + Sync> MessageDecrypter for Cipher<C> {
    fn decrypt<'a>(&mut self, mut message: InboundOpaqueMessage<'a>, sequence: u64) -> Result<InboundPlainMessage<'a>, rustls::Error> {
        let payload = &mut message.payload;
        if payload.len() < TAG_LENGTH {
            return Err(rustls::Error::DecryptError);
        }
        let nonce = Nonce::new(&self.1, sequence).0;
        let additional_data = make_tls13_aad(payload.len());
        self.0
            .decrypt_in_place(aes_gcm::aead::generic_array::GenericArray::from_slice(&nonce), &additional_data, &mut DecryptBuffer(payload))
            .map_err(|_| rustls::Error::DecryptError)?;
        message.into_tls13_unpadded_message()
    }
}

/// A rustls payload as a RustCrypto in-place buffer (shared with the TLS 1.2 ciphers).
pub(crate) struct EncryptBuffer<'a>(pub(crate) &'a mut PrefixedPayload);

impl AsRef<[u8]> for EncryptBuffer<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl AsMut<[u8]> for EncryptBuffer<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        self.0.as_mut()
    }
}

impl Buffer for EncryptBuffer<'_> {
    fn extend_from_slice(&mut self, other: &[u8]) -> aes_gcm::aead::Result<()> {
        self.0.extend_from_slice(other);
        Ok(())
    }

    fn truncate(&mut self, length: usize) {
        self.0.truncate(length)
    }
}

/// A received record's payload as a RustCrypto in-place buffer.
pub(crate) struct DecryptBuffer<'a, 'p>(pub(crate) &'a mut BorrowedPayload<'p>);

impl AsRef<[u8]> for DecryptBuffer<'_, '_> {
    fn as_ref(&self) -> &[u8] {
        self.0
    }
}

impl AsMut<[u8]> for DecryptBuffer<'_, '_> {
    fn as_mut(&mut self) -> &mut [u8] {
        self.0
    }
}

impl Buffer for DecryptBuffer<'_, '_> {
    fn extend_from_slice(&mut self, _: &[u8]) -> aes_gcm::aead::Result<()> {
        // decrypt_in_place only ever shrinks the buffer.
        Err(aes_gcm::aead::Error)
    }

    fn truncate(&mut self, length: usize) {
        self.0.truncate(length)
    }
}
