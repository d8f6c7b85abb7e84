//! The on-flash record of the QEMU board's entropy seed (shared with `cargo xtask`, which
//! writes the first one into a fresh flash image, like a factory programming step).
//!
//! Layout, 64 bytes: magic `HMXSEED1`, generation (u32 LE), seed (32 bytes), the first 16
//! bytes of SHA-256 over the previous fields, 4 bytes of padding (`0xFF`).

use sha2::{Digest, Sha256};

/// Bytes one record takes on flash.
pub const RECORD_SIZE: usize = 64;
const MAGIC: &[u8; 8] = b"HMXSEED1";

/// A decoded seed record.
#[derive(Clone)]
pub struct SeedRecord {
    /// Incremented at every boot; the newest record wins.
    pub generation: u32,
    /// The secret the boot's random stream and the next seed are derived from.
    pub seed: [u8; 32],
}

fn check_value(generation: u32, seed: &[u8; 32]) -> [u8; 16] {
    let digest = Sha256::new().chain_update(MAGIC).chain_update(generation.to_le_bytes()).chain_update(seed).finalize();
    let mut check = [0u8; 16];
    check.copy_from_slice(&digest[..16]);
    check
}

impl SeedRecord {
    /// Encodes the record for flash.
    pub fn encode(&self) -> [u8; RECORD_SIZE] {
        let mut bytes = [0xffu8; RECORD_SIZE];
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8..12].copy_from_slice(&self.generation.to_le_bytes());
        bytes[12..44].copy_from_slice(&self.seed);
        bytes[44..60].copy_from_slice(&check_value(self.generation, &self.seed));
        bytes
    }

    /// Decodes a record; `None` for erased, torn or foreign contents.
    pub fn decode(bytes: &[u8; RECORD_SIZE]) -> Option<Self> {
        if &bytes[..8] != MAGIC {
            return None;
        }
        let generation = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes[12..44]);
        (bytes[44..60] == check_value(generation, &seed)).then_some(Self { generation, seed })
    }

    /// The record that replaces this one at the next boot (one-way: the old seed cannot be
    /// recovered from the new one).
    pub fn ratchet(&self) -> Self {
        let digest = Sha256::new().chain_update(b"homemx seed ratchet").chain_update(self.seed).finalize();
        Self { generation: self.generation.wrapping_add(1), seed: digest.into() }
    }

    /// The key of this boot's random stream (domain-separated from the ratchet).
    pub fn stream_key(&self, jitter: u32) -> [u8; 32] {
        Sha256::new()
            .chain_update(b"homemx boot stream")
            .chain_update(self.seed)
            .chain_update(self.generation.to_le_bytes())
            .chain_update(jitter.to_le_bytes())
            .finalize()
            .into()
    }
}
