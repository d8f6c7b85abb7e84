//! Random streams for the firmware's consumers (network stack, spool, key-value store,
//! console challenges): each is a ChaCha20 stream keyed with 32 fresh bytes from the board's
//! entropy source, so consumers never share or disturb each other's state.

use homemx_board::EntropySource;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// An independent random stream derived from the board's entropy.
pub struct DerivedRandom(ChaCha20Rng);

impl DerivedRandom {
    /// Keys a new stream from the board.
    pub fn from_board(entropy: &mut impl EntropySource) -> Self {
        let mut key = [0u8; 32];
        entropy.fill_bytes(&mut key);
        let stream = ChaCha20Rng::from_seed(key);
        key.fill(0);
        Self(stream)
    }

    /// A new independent stream keyed from this one.
    pub fn derive(&mut self) -> Self {
        let mut key = [0u8; 32];
        self.0.fill_bytes(&mut key);
        let stream = ChaCha20Rng::from_seed(key);
        key.fill(0);
        Self(stream)
    }

    /// The stream itself, for consumers that take a `rand_core` generator (TLS).
    pub fn into_rng(self) -> ChaCha20Rng {
        self.0
    }

    /// A random 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}

impl homemx_spool::RandomSource for DerivedRandom {
    fn fill_bytes(&mut self, buffer: &mut [u8]) {
        self.0.fill_bytes(buffer);
    }
}

impl homemx_wire::device::NonceSource for DerivedRandom {
    fn fill_bytes(&mut self, buffer: &mut [u8]) {
        self.0.fill_bytes(buffer);
    }
}
