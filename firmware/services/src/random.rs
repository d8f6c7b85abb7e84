//! Random streams for the firmware's consumers (network stack, spool, key-value store,
//! console challenges): each is a ChaCha20 stream keyed with 32 fresh bytes from the board's
//! entropy source, so consumers never share or disturb each other's state.
//!
//! A stream hands out each output once and keeps no copy: ChaCha20's block buffer would
//! otherwise hold what it gave (the data key is drawn from one, and every derived stream's
//! key) until the buffer is used up, so after each draw the buffer is refilled from the next
//! unused block (`set_word_pos`), overwriting what was handed out.
//!
//! Owns: nothing (each stream is owned by whoever derived it). Calls: nothing.

use homemx_board::EntropySource;
use homemx_keystore::secret::SecretBytes;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// An independent random stream derived from the board's entropy.
pub struct DerivedRandom(ChaCha20Rng);

impl DerivedRandom {
    /// Keys a new stream from the board.
    pub fn from_board(entropy: &mut impl EntropySource) -> Self {
        let mut key = SecretBytes::<32>::zeroed();
        entropy.fill_bytes(key.expose_mut());
        Self(ChaCha20Rng::from_seed(*key.expose()))
    }

    /// A new independent stream keyed from this one.
    pub fn derive(&mut self) -> Self {
        let mut key = SecretBytes::<32>::zeroed();
        self.fill(key.expose_mut());
        Self(ChaCha20Rng::from_seed(*key.expose()))
    }

    /// Fills `buffer` and forgets it: the block buffer is refilled from the next unused
    /// ChaCha20 block on (the rest of the current block is skipped: a refill from the current
    /// block would regenerate what was just handed out).
    fn fill(&mut self, buffer: &mut [u8]) {
        const BLOCK_WORDS: u128 = 16;
        self.0.fill_bytes(buffer);
        let next_block = self.0.get_word_pos().div_ceil(BLOCK_WORDS) * BLOCK_WORDS;
        self.0.set_word_pos(next_block);
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
        self.fill(buffer);
    }
}

impl homemx_wire::device::NonceSource for DerivedRandom {
    fn fill_bytes(&mut self, buffer: &mut [u8]) {
        self.fill(buffer);
    }
}
