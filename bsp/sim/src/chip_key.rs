//! The simulated chip key: a per-device secret drawn from the simulation's seed (its own
//! stream, [`Domain::ChipKey`]), standing in for the STM32H573's SAES with the DHUK, so that the
//! simulator runs the key store's bound path. `derive(label)` is SHA-256(secret | label): the
//! same bytes for the same seed and label at every boot, unrelated ones under another seed
//! (another "chip"). Like the simulated entropy, whoever knows the seed knows it.
//!
//! Owns the secret. Calls: `sha2`.

use homemx_board::{ChipKey, ChipKeyError};
use rand_core::RngCore;
use sha2::{Digest, Sha256};

use crate::seeds::{self, Domain};

/// The simulated device's chip key.
pub struct SimChipKey {
    secret: [u8; 32],
}

impl SimChipKey {
    /// The chip key of the device simulated under `seed` (the same at every boot).
    pub fn new(seed: u64) -> Self {
        let mut secret = [0u8; 32];
        seeds::stream(seed, Domain::ChipKey, 0).fill_bytes(&mut secret);
        Self { secret }
    }
}

impl ChipKey for SimChipKey {
    fn is_available(&self) -> bool {
        true
    }

    fn derive(&mut self, label: &[u8; 32], output: &mut [u8; 32]) -> Result<(), ChipKeyError> {
        let mut hash = Sha256::new();
        hash.update(self.secret);
        hash.update(label);
        output.copy_from_slice(&hash.finalize());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_per_seed_and_label_and_different_across_seeds() {
        let label = [7u8; 32];
        let derive = |seed: u64, label: &[u8; 32]| {
            let mut output = [0u8; 32];
            SimChipKey::new(seed).derive(label, &mut output).unwrap();
            output
        };
        assert_eq!(derive(1, &label), derive(1, &label));
        assert_ne!(derive(1, &label), derive(2, &label));
        assert_ne!(derive(1, &label), derive(1, &[8u8; 32]));
    }
}
