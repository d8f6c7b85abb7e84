//! SHA-256 and SHA-384 (RustCrypto `sha2`) as rustls hashes and HMACs: the transcript hashes
//! and the HKDF of the TLS 1.3 key schedule.

use alloc::boxed::Box;

use hmac::{Mac as _, SimpleHmac};
use rustls::crypto::{hash, hmac as rustls_hmac};
use sha2::Digest;

/// A rustls hash over one RustCrypto digest.
pub struct Hash<D>(core::marker::PhantomData<D>, hash::HashAlgorithm);

/// SHA-256.
pub static SHA256: Hash<sha2::Sha256> = Hash(core::marker::PhantomData, hash::HashAlgorithm::SHA256);
/// SHA-384.
pub static SHA384: Hash<sha2::Sha384> = Hash(core::marker::PhantomData, hash::HashAlgorithm::SHA384);

// The digests are stateless marker types here: sharing the statics between threads is safe.
unsafe impl<D> Sync for Hash<D> {}
unsafe impl<D> Send for Hash<D> {}

impl<D: Digest + Clone + Send + Sync + 'static> hash::Hash for Hash<D> {
    fn start(&self) -> Box<dyn hash::Context> {
        Box::new(Context(D::new()))
    }

    fn hash(&self, data: &[u8]) -> hash::Output {
        hash::Output::new(&D::digest(data)[..])
    }

    fn algorithm(&self) -> hash::HashAlgorithm {
        self.1
    }

    fn output_len(&self) -> usize {
        <D as Digest>::output_size()
    }
}

struct Context<D>(D);

impl<D: Digest + Clone + Send + Sync + 'static> hash::Context for Context<D> {
    fn fork_finish(&self) -> hash::Output {
        hash::Output::new(&self.0.clone().finalize()[..])
    }

    fn fork(&self) -> Box<dyn hash::Context> {
        Box::new(Context(self.0.clone()))
    }

    fn finish(self: Box<Self>) -> hash::Output {
        hash::Output::new(&self.0.finalize()[..])
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
}

/// HMAC over one RustCrypto digest (the HKDF of [`rustls::crypto::tls13::HkdfUsingHmac`]).
pub struct Hmac<D>(core::marker::PhantomData<D>);

/// HMAC-SHA-256.
pub static HMAC_SHA256: Hmac<sha2::Sha256> = Hmac(core::marker::PhantomData);
/// HMAC-SHA-384.
pub static HMAC_SHA384: Hmac<sha2::Sha384> = Hmac(core::marker::PhantomData);

unsafe impl<D> Sync for Hmac<D> {}
unsafe impl<D> Send for Hmac<D> {}

impl<D> rustls_hmac::Hmac for Hmac<D>
where
    D: Digest + hmac::digest::core_api::BlockSizeUser + Clone + Send + Sync + 'static,
{
    fn with_key(&self, key: &[u8]) -> Box<dyn rustls_hmac::Key> {
        // SimpleHmac accepts keys of any length.
        Box::new(HmacKey(SimpleHmac::<D>::new_from_slice(key).expect("HMAC takes keys of any length")))
    }

    fn hash_output_len(&self) -> usize {
        <D as Digest>::output_size()
    }
}

struct HmacKey<D: Digest + hmac::digest::core_api::BlockSizeUser>(SimpleHmac<D>);

impl<D> rustls_hmac::Key for HmacKey<D>
where
    D: Digest + hmac::digest::core_api::BlockSizeUser + Clone + Send + Sync + 'static,
{
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> rustls_hmac::Tag {
        let mut context = self.0.clone();
        context.update(first);
        for part in middle {
            context.update(part);
        }
        context.update(last);
        rustls_hmac::Tag::new(&context.finalize().into_bytes()[..])
    }

    fn tag_len(&self) -> usize {
        <D as Digest>::output_size()
    }
}
