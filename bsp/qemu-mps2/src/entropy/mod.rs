//! Entropy for a board without a TRNG: a seed provisioned into flash, ratcheted forward and
//! re-written at every boot before a single random byte is handed out.
//!
//! Two 4 KiB sectors at the start of the flash hold seed records ([`seed_record`]); the one
//! with the highest generation is current. At boot the board derives this boot's stream key
//! from it (SHA-256, domain-separated, mixed with the LAN9118 free-running counter), writes
//! the ratcheted record (next generation, SHA-256 of the seed) into the *other* sector, reads
//! it back, erases the sector of the seed it came from (and wipes that seed from RAM), and
//! only then starts a ChaCha20 stream. Consequences:
//!
//! - No two boots share a stream: a boot only produces output after its successor seed is on
//!   flash; a power cut before that leaves the old record, and the boot produced nothing. A
//!   power cut between the read-back and the erase leaves both records; the newer one wins.
//! - An attacker who reads the flash (while the board runs or later) learns only the *next*
//!   seed, never the one this boot's stream was keyed from, nor past streams (the ratchet is
//!   one-way, and the current seed is erased before the stream starts).
//! - Weakness, accepted for a test board only: whoever knows the provisioned seed (it came
//!   from the host's `/dev/urandom` in `cargo xtask flash-image`) and the boot count can
//!   predict every stream; there is no fresh physical randomness. The real board uses the
//!   STM32 hardware RNG instead ([`homemx_board::EntropyKind::Hardware`]).

pub mod seed_record;

use homemx_board::{EntropyKind, EntropySource};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::flash::{PsramNorFlash, SECTOR_SIZE};
use crate::InitError;
use seed_record::{SeedRecord, RECORD_SIZE};

/// A ChaCha20 stream keyed from this boot's ratcheted seed.
pub struct SeededEntropy {
    stream: ChaCha20Rng,
    generation: u32,
}

impl SeededEntropy {
    /// Ratchets the seed on flash and keys this boot's stream from it.
    pub(crate) fn from_flash(flash: &mut PsramNorFlash, jitter: u32) -> Result<Self, InitError> {
        let mut newest: Option<(usize, SeedRecord)> = None;
        for slot in 0..2 {
            let mut bytes = [0u8; RECORD_SIZE];
            flash.read_blocking((slot * SECTOR_SIZE) as u32, &mut bytes).map_err(|_| InitError::Flash)?;
            if let Some(record) = SeedRecord::decode(&bytes) {
                let newer = newest.as_ref().is_none_or(|(_, best)| record.generation.wrapping_sub(best.generation) as i32 > 0);
                if newer {
                    newest = Some((slot, record));
                }
            }
        }
        let (slot, mut current) = newest.ok_or(InitError::EntropySeedMissing)?;
        let next = current.ratchet();
        let other = ((1 - slot) * SECTOR_SIZE) as u32;
        flash.erase_blocking(other, other + SECTOR_SIZE as u32).map_err(|_| InitError::Flash)?;
        flash.write_blocking(other, &next.encode()).map_err(|_| InitError::Flash)?;
        let mut check = [0u8; RECORD_SIZE];
        flash.read_blocking(other, &mut check).map_err(|_| InitError::Flash)?;
        if SeedRecord::decode(&check).is_none_or(|stored| stored.generation != next.generation) {
            return Err(InitError::Flash);
        }
        let stream = ChaCha20Rng::from_seed(current.stream_key(jitter));
        // The successor is on flash and reads back: the seed this boot's stream came from
        // goes, from flash and from RAM.
        let current_offset = (slot * SECTOR_SIZE) as u32;
        flash.erase_blocking(current_offset, current_offset + SECTOR_SIZE as u32).map_err(|_| InitError::Flash)?;
        for byte in current.seed.iter_mut() {
            // SAFETY: a valid, exclusively borrowed byte; volatile so the wipe is not elided.
            unsafe { core::ptr::write_volatile(byte, 0) };
        }
        Ok(Self { stream, generation: next.generation })
    }

    /// The generation of the seed now on flash (= boots since provisioning).
    pub fn generation(&self) -> u32 {
        self.generation
    }
}

impl EntropySource for SeededEntropy {
    fn fill_bytes(&mut self, buffer: &mut [u8]) {
        self.stream.fill_bytes(buffer);
    }

    fn kind(&self) -> EntropyKind {
        EntropyKind::RatchetedSeed
    }
}
