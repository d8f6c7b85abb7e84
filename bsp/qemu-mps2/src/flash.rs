//! Persistent NOR flash for the QEMU board, emulated on the mps2 PSRAM.
//!
//! QEMU's mps2 has no pflash; its 16 MiB PSRAM at `0x2100_0000` is mapped from a host file
//! (`-object memory-backend-file,...,share=on -machine memory-backend=...`), so whatever the
//! firmware stores there survives a QEMU restart or a SIGKILL. This driver gives the first
//! 8 MiB real NOR behaviour: erase sets a 4 KiB sector to `0xFF`, programming can only clear
//! bits (the stored value becomes `old & new`), writes are 4-byte aligned, and every program
//! and erase is counted for the benchmarks.
//!
//! The first [`BOARD_AREA_SIZE`] bytes belong to the board (the entropy seed); the
//! application gets the rest as two [`Partition`]s whose addresses start at zero: the key
//! store's [`KEY_FLASH_SIZE`] bytes first (the board's key flash), then everything else (its
//! data flash). Each counts its own work.

use core::ptr::{read_volatile, write_volatile};

use embedded_storage_async::nor_flash::{ErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash};
use homemx_board::{FlashCounters, FlashStatistics};

const BASE: usize = 0x2100_0000;
/// Emulated flash size.
pub const CAPACITY: usize = 8 * 1024 * 1024;
/// Erase sector size (like a QSPI NOR's 4 KiB sector).
pub const SECTOR_SIZE: usize = 4096;
/// Program granularity.
pub const WORD_SIZE: usize = 4;
/// Program page size: one program operation never crosses a page boundary.
pub const PAGE_SIZE: usize = 256;
/// Flash reserved for the board (entropy seed, two sectors).
pub const BOARD_AREA_SIZE: usize = 2 * SECTOR_SIZE;
/// The key flash: the four sectors after the board area.
pub const KEY_FLASH_SIZE: usize = 4 * SECTOR_SIZE;
/// The data flash: the rest.
pub const DATA_FLASH_SIZE: usize = CAPACITY - BOARD_AREA_SIZE - KEY_FLASH_SIZE;

fn check_range(offset: u32, length: usize, alignment: usize, capacity: usize) -> Result<(), NorFlashErrorKind> {
    let offset = offset as usize;
    if offset % alignment != 0 || length % alignment != 0 {
        return Err(NorFlashErrorKind::NotAligned);
    }
    if offset.checked_add(length).is_none_or(|end| end > capacity) {
        return Err(NorFlashErrorKind::OutOfBounds);
    }
    Ok(())
}

/// The whole emulated NOR device.
pub struct PsramNorFlash {
    statistics: FlashStatistics,
}

impl PsramNorFlash {
    pub(crate) fn take() -> Self {
        Self { statistics: FlashStatistics::default() }
    }

    fn byte_pointer(offset: usize) -> *mut u8 {
        (BASE + offset) as *mut u8
    }

    /// Reads `bytes.len()` bytes at `offset`.
    pub fn read_blocking(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), NorFlashErrorKind> {
        check_range(offset, bytes.len(), 1, CAPACITY)?;
        for (index, byte) in bytes.iter_mut().enumerate() {
            // SAFETY: in range of the PSRAM window, checked above.
            *byte = unsafe { read_volatile(Self::byte_pointer(offset as usize + index)) };
        }
        self.statistics.bytes_read += bytes.len() as u64;
        Ok(())
    }

    /// Programs `bytes` at `offset` (word aligned): each stored bit can only go from 1 to 0.
    pub fn write_blocking(&mut self, offset: u32, bytes: &[u8]) -> Result<(), NorFlashErrorKind> {
        check_range(offset, bytes.len(), WORD_SIZE, CAPACITY)?;
        for (index, byte) in bytes.iter().enumerate() {
            let pointer = Self::byte_pointer(offset as usize + index);
            // SAFETY: in range of the PSRAM window, checked above.
            unsafe { write_volatile(pointer, read_volatile(pointer) & byte) };
        }
        self.statistics.bytes_programmed += bytes.len() as u64;
        Ok(())
    }

    /// Erases the sectors in `from..to` (sector aligned) to `0xFF`.
    pub fn erase_blocking(&mut self, from: u32, to: u32) -> Result<(), NorFlashErrorKind> {
        if to < from {
            return Err(NorFlashErrorKind::OutOfBounds);
        }
        check_range(from, (to - from) as usize, SECTOR_SIZE, CAPACITY)?;
        for offset in from as usize..to as usize {
            // SAFETY: in range of the PSRAM window, checked above.
            unsafe { write_volatile(Self::byte_pointer(offset), 0xff) };
        }
        self.statistics.sectors_erased += ((to - from) as usize / SECTOR_SIZE) as u64;
        Ok(())
    }
}

/// A window of the application's part of the flash (after the board area), addressed from 0.
pub struct Partition {
    device: PsramNorFlash,
    start: u32,
    length: usize,
}

impl Partition {
    /// The key flash and the data flash, after the board area: the data flash goes on counting
    /// in `device`'s counters (the board's work since boot), the key flash counts its own.
    pub(crate) fn key_and_data(device: PsramNorFlash) -> (Self, Self) {
        let key_start = BOARD_AREA_SIZE as u32;
        let data_start = key_start + KEY_FLASH_SIZE as u32;
        (
            Self { device: PsramNorFlash::take(), start: key_start, length: KEY_FLASH_SIZE },
            Self { device, start: data_start, length: DATA_FLASH_SIZE },
        )
    }

    fn translate(&self, offset: u32, length: usize) -> Result<u32, NorFlashErrorKind> {
        check_range(offset, length, 1, self.length)?;
        Ok(self.start + offset)
    }
}

impl ErrorType for Partition {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for Partition {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let device_offset = self.translate(offset, bytes.len())?;
        self.device.read_blocking(device_offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.length
    }
}

impl NorFlash for Partition {
    const WRITE_SIZE: usize = WORD_SIZE;
    const ERASE_SIZE: usize = SECTOR_SIZE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if to < from {
            return Err(NorFlashErrorKind::OutOfBounds);
        }
        let device_from = self.translate(from, (to - from) as usize)?;
        let device_to = device_from + (to - from);
        if device_from % SECTOR_SIZE as u32 != 0 || device_to % SECTOR_SIZE as u32 != 0 {
            return Err(NorFlashErrorKind::NotAligned);
        }
        // Sector by sector, returning to the executor in between as a real part's erase
        // (milliseconds per sector) does: erasing a whole partition in one poll stalls every
        // other task.
        let mut sector = device_from;
        while sector < device_to {
            self.device.erase_blocking(sector, sector + SECTOR_SIZE as u32)?;
            sector += SECTOR_SIZE as u32;
            if sector < device_to {
                embassy_futures::yield_now().await;
            }
        }
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let device_offset = self.translate(offset, bytes.len())?;
        self.device.write_blocking(device_offset, bytes)
    }
}

impl FlashCounters for Partition {
    fn statistics(&self) -> FlashStatistics {
        self.device.statistics
    }
}
