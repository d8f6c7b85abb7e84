//! Shared test support: a 16 KiB simulated NOR region (4 sectors of 4 KiB, 4-byte words, as
//! on the board), a cheap iteration count, and mount/"reboot" helpers.
#![allow(dead_code, unused_imports)]

use core::ops::Range;
use homemx_keystore::{Keystore, KeystoreConfig, KeystoreError};
pub use homemx_spool::testing::{block_on, CutMode, SimulatedFlash, TestRandom};

pub type Flash = SimulatedFlash<4, 4096>;
pub type Store = Keystore<Flash, TestRandom>;

pub const REGION: Range<u32> = 0..0x4000;
pub const SECTOR: usize = 4096;
/// Host tests use a tiny count; the KDF vector test in `kdf` runs the real cost.
pub const ITERATIONS: u32 = 2;
pub const ADMIN: [u8; 32] = [0xA1; 32];
pub const OTHER_ADMIN: [u8; 32] = [0xB2; 32];
pub const PASSPHRASE: &[u8] = b"correct horse battery staple";
pub const NEW_PASSPHRASE: &[u8] = b"tr0ub4dor&3 but longer";

pub fn config() -> KeystoreConfig {
    KeystoreConfig { iterations: ITERATIONS }
}

pub fn fresh_flash() -> Flash {
    Flash::new(REGION.end as usize)
}

/// Mounts a key store on `flash` (a clone shares the memory): boot or reboot.
pub fn mount(flash: &Flash, seed: u64) -> Result<Store, KeystoreError> {
    block_on(Store::mount(flash.clone(), REGION, TestRandom::new(seed), config()))
}

/// A provisioned, locked device; returns its flash and the data key bytes.
pub fn provisioned() -> (Flash, [u8; 32]) {
    let flash = fresh_flash();
    let mut store = mount(&flash, 1).unwrap();
    let key = block_on(store.initialise(PASSPHRASE, ADMIN)).unwrap();
    let bytes = *key.expose_secret();
    (flash, bytes)
}

/// Unlocks at time `now` and returns the key bytes.
pub fn unlock(store: &mut Store, passphrase: &[u8], now: u64) -> Result<[u8; 32], homemx_keystore::UnlockError> {
    block_on(store.unlock(passphrase, now)).map(|key| *key.expose_secret())
}

/// The sectors of the region whose first bytes are the record magic.
pub fn sectors_with_records(flash: &Flash) -> Vec<usize> {
    let image = flash.snapshot();
    (0..REGION.end as usize / SECTOR)
        .filter(|sector| &image[sector * SECTOR..sector * SECTOR + 4] == b"HMXK")
        .collect()
}
