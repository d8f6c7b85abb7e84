//! The bridge from rustls's random source to RustCrypto's `RngCore` (for key generation).

use rustls::crypto::SecureRandom;

/// Draws RustCrypto randomness from a rustls [`SecureRandom`]. A failing source is a fatal
/// fault (no key may be made from missing entropy): it panics, and the panic handler resets.
pub struct RandomAdapter(pub &'static dyn SecureRandom);

impl rand_core::RngCore for RandomAdapter {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0u8; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, destination: &mut [u8]) {
        self.0.fill(destination).expect("the random source failed");
    }

    fn try_fill_bytes(&mut self, destination: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill(destination).map_err(|_| rand_core::Error::from(core::num::NonZeroU32::new(rand_core::Error::CUSTOM_START).expect("non-zero")))
    }
}

impl rand_core::CryptoRng for RandomAdapter {}
