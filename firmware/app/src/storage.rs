//! The map of the application's flash partition: where the key store, the key-value store
//! and the mail spool live. Sizes are in whole 4 KiB sectors (the QEMU board's NOR).

use core::ops::Range;

/// Erase sector size assumed by this map.
pub const SECTOR_SIZE: u32 = 4096;
/// Wrapped data key, admin public key, unlock-failure counter.
pub const KEY_STORE: Range<u32> = 0..4 * SECTOR_SIZE;
/// Encrypted configuration, credentials, POP3 UIDLs, counters.
pub const KEY_VALUE_STORE: Range<u32> = KEY_STORE.end..KEY_STORE.end + 64 * SECTOR_SIZE;
/// The first byte of the mail spool; it runs to the end of the partition (whole sectors).
pub const SPOOL_START: u32 = KEY_VALUE_STORE.end;
/// Sectors of the spool on the QEMU board (8 MiB flash less the 8 KiB board area).
pub const SPOOL_SECTORS: usize = ((8 * 1024 * 1024 - 8 * 1024 - SPOOL_START) / SECTOR_SIZE) as usize;
/// Messages the spool can hold at once.
pub const SPOOL_MESSAGES: usize = 128;

/// The spool's byte range in a partition of `capacity` bytes.
pub fn spool_region(capacity: usize) -> Range<u32> {
    let end = (capacity as u32 / SECTOR_SIZE) * SECTOR_SIZE;
    SPOOL_START..end.min(SPOOL_START + SPOOL_SECTORS as u32 * SECTOR_SIZE)
}
