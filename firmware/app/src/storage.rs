//! The map of the application's flash partition and the partitions handed to the key store,
//! the key-value store and the mail spool. All three share the board's one flash through an
//! async mutex (embassy-embedded-hal's `Partition`).
//!
//! The map assumes 4 KiB erase sectors (the QEMU board's NOR). The NUCLEO-F429ZI's internal
//! flash erases 128 KiB at a time and needs its own map before storage runs there.

use core::ops::Range;

use embassy_embedded_hal::flash::partition::Partition;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::mutex::Mutex;
use embedded_storage_async::nor_flash::ReadNorFlash;
use static_cell::StaticCell;

use crate::network::PartsTypes;

/// The board's flash type.
pub type BoardFlash = <crate::bsp::Parts as PartsTypes>::Flash;
/// A window of the shared flash, addressed from zero.
pub type FlashPartition = Partition<'static, CriticalSectionRawMutex, BoardFlash>;

/// Erase sector size assumed by this map.
pub const SECTOR_SIZE: u32 = 4096;
/// Wrapped data key, admin public key, unlock-failure counter.
pub const KEY_STORE: Range<u32> = 0..4 * SECTOR_SIZE;
/// Encrypted configuration, credentials, POP3 UIDLs, counters.
pub const KEY_VALUE_STORE: Range<u32> = KEY_STORE.end..KEY_STORE.end + 64 * SECTOR_SIZE;
/// Sectors of the key-value store (its cache keeps a few bytes per sector).
pub const KEY_VALUE_SECTORS: usize = ((KEY_VALUE_STORE.end - KEY_VALUE_STORE.start) / SECTOR_SIZE) as usize;
/// The first byte of the mail spool; it runs to the end of the partition (whole sectors).
pub const SPOOL_START: u32 = KEY_VALUE_STORE.end;
/// Sectors of the spool on the QEMU board (8 MiB flash less the 8 KiB board area).
pub const SPOOL_SECTORS: usize = ((8 * 1024 * 1024 - 8 * 1024 - SPOOL_START) / SECTOR_SIZE) as usize;
/// Messages the spool can hold at once (96 bytes of RAM each; the 192 KB STM32 board holds
/// 64).
pub const SPOOL_MESSAGES: usize = if cfg!(feature = "board-nucleo-f429zi") { 64 } else { 128 };

/// The spool's byte range in a partition of `capacity` bytes.
pub fn spool_region(capacity: usize) -> Range<u32> {
    let end = (capacity as u32 / SECTOR_SIZE) * SECTOR_SIZE;
    SPOOL_START..end.min(SPOOL_START + SPOOL_SECTORS as u32 * SECTOR_SIZE)
}

/// The three windows of the flash.
pub struct FlashPartitions {
    /// The key store's sectors (addresses from 0).
    pub key_store: FlashPartition,
    /// The key-value store's sectors (addresses from 0).
    pub key_value_store: FlashPartition,
    /// The spool's sectors (addresses from 0).
    pub spool: FlashPartition,
}

/// Puts the board's flash behind the shared mutex and cuts it into the map's partitions;
/// `None` on a board whose erase sectors do not fit this map.
pub fn partition(flash: BoardFlash) -> Option<FlashPartitions> {
    use embedded_storage_async::nor_flash::NorFlash;
    if BoardFlash::ERASE_SIZE as u32 != SECTOR_SIZE {
        return None;
    }
    static SHARED: StaticCell<Mutex<CriticalSectionRawMutex, BoardFlash>> = StaticCell::new();
    let spool = spool_region(flash.capacity());
    let shared: &'static _ = SHARED.init(Mutex::new(flash));
    let window = |range: Range<u32>| Partition::new(shared, range.start, range.end - range.start);
    Some(FlashPartitions {
        key_store: window(KEY_STORE),
        key_value_store: window(KEY_VALUE_STORE),
        spool: window(spool),
    })
}
