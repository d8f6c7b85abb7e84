//! The device's random bytes: a ChaCha20 stream from the simulation's seed, one per boot.
//!
//! Honest about what it is ([`EntropyKind::Simulated`]): whoever knows the seed knows every
//! byte, which is the point of a reproducible run and why no product uses it.
//!
//! Owns its stream. Calls: `rand_chacha`.

use homemx_board::{EntropyKind, EntropySource};
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;

use crate::seeds::{self, Domain};

/// The ChaCha20 stream of one boot.
pub struct SimEntropy {
    stream: ChaCha20Rng,
}

impl SimEntropy {
    /// The stream of boot number `boot` under `seed`.
    pub fn new(seed: u64, boot: u32) -> Self {
        Self { stream: seeds::stream(seed, Domain::DeviceEntropy, boot) }
    }
}

impl EntropySource for SimEntropy {
    fn fill_bytes(&mut self, buffer: &mut [u8]) {
        self.stream.fill_bytes(buffer);
    }

    fn kind(&self) -> EntropyKind {
        EntropyKind::Simulated
    }
}
