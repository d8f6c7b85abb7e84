//! The map of the application's two flashes and the partitions handed to the key store (on
//! the key flash), the key-value store and the mail spool (both on the data flash). Each flash
//! is shared by its stores through an async mutex (embassy-embedded-hal's `Partition`).
//!
//! The board declares the map (`bsp::FLASH_MAP`: each flash's sector size and the sectors per
//! store); the windows here follow it. The stores run on every power-of-two sector size from
//! 4 KiB to 128 KiB; a map they cannot run on does not compile (`FlashMap::is_consistent`), and
//! a board whose flashes erase other sectors than its map says is refused at start.
//!
//! Owns: the shared flashes and their mutexes. Calls: `network`.

use core::ops::Range;

use embassy_embedded_hal::flash::partition::Partition;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::mutex::Mutex;
use embedded_storage_async::nor_flash::ReadNorFlash;
use static_cell::StaticCell;

use crate::network::PartsTypes;

/// The board's data flash type (key-value store and spool).
pub type BoardFlash = <crate::bsp::Parts as PartsTypes>::Flash;
/// The board's key flash type (key store).
pub type BoardKeyFlash = <crate::bsp::Parts as PartsTypes>::KeyFlash;
/// A window of the shared data flash, addressed from zero.
pub type FlashPartition = Partition<'static, CriticalSectionRawMutex, BoardFlash>;
/// A window of the shared key flash, addressed from zero.
pub type KeyFlashPartition = Partition<'static, CriticalSectionRawMutex, BoardKeyFlash>;

/// The board's map of its flashes.
const MAP: homemx_board::FlashMap = crate::bsp::FLASH_MAP;
const _: () = assert!(MAP.is_consistent(), "the stores do not run on the board's flash map");
/// Erase sector size of the data flash.
pub const SECTOR_SIZE: u32 = MAP.sector_size;
/// Wrapped data key, admin public key, unlock-failure counter (on the key flash).
pub const KEY_STORE: Range<u32> = 0..MAP.key_store_bytes();
/// Encrypted configuration, credentials, POP3 UIDLs, counters (on the data flash).
pub const KEY_VALUE_STORE: Range<u32> = 0..MAP.key_value_sectors * SECTOR_SIZE;
/// Sectors of the key-value store (its cache keeps a few bytes per sector).
pub const KEY_VALUE_SECTORS: usize = MAP.key_value_sectors as usize;
/// The first byte of the mail spool on the data flash.
pub const SPOOL_START: u32 = KEY_VALUE_STORE.end;
/// Sectors of the spool.
pub const SPOOL_SECTORS: usize = MAP.spool_sectors as usize;
/// The spool's byte range on the data flash.
pub const SPOOL: Range<u32> = SPOOL_START..SPOOL_START + MAP.spool_sectors * SECTOR_SIZE;
/// Messages the spool can hold at once (80 bytes of RAM each on the boards).
pub const SPOOL_MESSAGES: usize = crate::bsp::SIZING.spool_messages;

/// The three windows of the flashes.
pub struct FlashPartitions {
    /// The key store's sectors on the key flash (addresses from 0).
    pub key_store: KeyFlashPartition,
    /// The key-value store's sectors on the data flash (addresses from 0).
    pub key_value_store: FlashPartition,
    /// The spool's sectors on the data flash (addresses from 0).
    pub spool: FlashPartition,
}

/// Puts the board's flashes behind their shared mutexes and cuts them into the map's
/// partitions; `None` on a board whose erase sectors or capacities do not fit this map.
pub fn partition(key_flash: BoardKeyFlash, flash: BoardFlash) -> Option<FlashPartitions> {
    use embedded_storage_async::nor_flash::NorFlash;
    if BoardKeyFlash::ERASE_SIZE as u32 != MAP.key_sector_size
        || key_flash.capacity() < MAP.key_store_bytes() as usize
        || BoardFlash::ERASE_SIZE as u32 != SECTOR_SIZE
        || flash.capacity() < MAP.data_bytes() as usize
    {
        return None;
    }
    static SHARED_KEY_FLASH: StaticCell<Mutex<CriticalSectionRawMutex, BoardKeyFlash>> = StaticCell::new();
    static SHARED: StaticCell<Mutex<CriticalSectionRawMutex, BoardFlash>> = StaticCell::new();
    let shared_key_flash: &'static _ = SHARED_KEY_FLASH.init(Mutex::new(key_flash));
    let shared: &'static _ = SHARED.init(Mutex::new(flash));
    let window = |range: Range<u32>| Partition::new(shared, range.start, range.end - range.start);
    Some(FlashPartitions {
        key_store: Partition::new(shared_key_flash, KEY_STORE.start, KEY_STORE.end - KEY_STORE.start),
        key_value_store: window(KEY_VALUE_STORE),
        spool: window(SPOOL),
    })
}
