//! The map of the application's flash partition and the partitions handed to the key store,
//! the key-value store and the mail spool. All three share the board's one flash through an
//! async mutex (embassy-embedded-hal's `Partition`).
//!
//! The board declares the map (`bsp::FLASH_MAP`: sector size and sectors per store); the
//! windows here follow it. The stores run on every power-of-two sector size from 4 KiB to
//! 128 KiB; a map they cannot run on does not compile (`FlashMap::is_consistent`), and a
//! board whose flash erases other sectors than its map says is refused at start.
//!
//! Owns: the shared flash and its mutex. Calls: `network`.

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

/// The board's map of its application partition.
const MAP: homemx_board::FlashMap = crate::bsp::FLASH_MAP;
const _: () = assert!(MAP.is_consistent(), "the stores do not run on the board's flash map");
/// Erase sector size of the board's map.
pub const SECTOR_SIZE: u32 = MAP.sector_size;
/// Wrapped data key, admin public key, unlock-failure counter.
pub const KEY_STORE: Range<u32> = 0..MAP.key_store_sectors * SECTOR_SIZE;
/// Encrypted configuration, credentials, POP3 UIDLs, counters.
pub const KEY_VALUE_STORE: Range<u32> = KEY_STORE.end..KEY_STORE.end + MAP.key_value_sectors * SECTOR_SIZE;
/// Sectors of the key-value store (its cache keeps a few bytes per sector).
pub const KEY_VALUE_SECTORS: usize = MAP.key_value_sectors as usize;
/// The first byte of the mail spool.
pub const SPOOL_START: u32 = KEY_VALUE_STORE.end;
/// Sectors of the spool.
pub const SPOOL_SECTORS: usize = MAP.spool_sectors as usize;
/// The spool's byte range.
pub const SPOOL: Range<u32> = SPOOL_START..SPOOL_START + MAP.spool_sectors * SECTOR_SIZE;
/// Messages the spool can hold at once (96 bytes of RAM each).
pub const SPOOL_MESSAGES: usize = crate::bsp::SIZING.spool_messages;

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
    if BoardFlash::ERASE_SIZE as u32 != SECTOR_SIZE || flash.capacity() < MAP.bytes() as usize {
        return None;
    }
    static SHARED: StaticCell<Mutex<CriticalSectionRawMutex, BoardFlash>> = StaticCell::new();
    let shared: &'static _ = SHARED.init(Mutex::new(flash));
    let window = |range: Range<u32>| Partition::new(shared, range.start, range.end - range.start);
    Some(FlashPartitions {
        key_store: window(KEY_STORE),
        key_value_store: window(KEY_VALUE_STORE),
        spool: window(SPOOL),
    })
}
