//! The board's data partition: sectors 34–127 of the STM32H573's internal flash bank 2
//! (`0x0814_4000..0x0820_0000`, 752 KiB of 8 KiB sectors, see [`crate::partition_map`]), as an
//! async NOR flash that counts its own program and erase work.
//!
//! The firmware image is linked into bank 1 and the first 256 KiB of bank 2 (`memory.x`), so a
//! program or erase here does not stall instruction fetches from bank 1 (read-while-write);
//! fetches from the image's part of bank 2 wait for it.
//!
//! embassy-stm32 0.6 has only a blocking flash driver for the H5 family (no flash interrupt
//! handler), so `write` and `erase` run to completion inside the call: an 8 KiB sector erase
//! takes a few milliseconds (RM0481/datasheet), a 16-byte program tens of microseconds. The
//! executor runs nothing else meanwhile; the sectors are small enough that this is short.
//!
//! The H5's flash keeps an ECC code per 16-byte quad-word: a quad-word is programmed once per
//! erase (the stores never program a word twice, as on the QEMU board), and reading a
//! quad-word whose programming a power cut interrupted can raise an ECC double error (an NMI).
//! That case has not been met on hardware yet (README, "What was compiled and what was never
//! run").

use embassy_stm32::flash::{Blocking, Error, Flash};
use embedded_storage_async::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use homemx_board::{FlashCounters, FlashStatistics};

use crate::partition_map::{FLASH_START_ADDRESS, PARTITION_SIZE, PARTITION_START_ADDRESS, SECTOR_SIZE, WORD_SIZE};

const _: () = assert!(WORD_SIZE == embassy_stm32::flash::WRITE_SIZE, "the chip's program unit is not a quad-word");

/// Offset of the partition inside the flash driver's address space (which starts at
/// [`FLASH_START_ADDRESS`]).
const PARTITION_OFFSET: u32 = PARTITION_START_ADDRESS - FLASH_START_ADDRESS;

/// The data partition in bank 2. Addresses given to it start at zero.
pub struct DataPartition {
    flash: Flash<'static, Blocking>,
    statistics: FlashStatistics,
}

impl DataPartition {
    /// Takes the chip's flash driver; only the partition's range is ever touched through it.
    pub fn new(flash: Flash<'static, Blocking>) -> Self {
        Self { flash, statistics: FlashStatistics::default() }
    }

    fn check_range(offset: u32, length: usize, alignment: u32) -> Result<u32, Error> {
        let length = u32::try_from(length).map_err(|_| Error::Size)?;
        if !offset.is_multiple_of(alignment) || !length.is_multiple_of(alignment) {
            return Err(Error::Unaligned);
        }
        match offset.checked_add(length) {
            Some(end) if end <= PARTITION_SIZE => Ok(PARTITION_OFFSET + offset),
            _ => Err(Error::Size),
        }
    }
}

impl ErrorType for DataPartition {
    type Error = Error;
}

impl ReadNorFlash for DataPartition {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let driver_offset = Self::check_range(offset, bytes.len(), 1)?;
        self.flash.blocking_read(driver_offset, bytes)?;
        self.statistics.bytes_read += bytes.len() as u64;
        Ok(())
    }

    fn capacity(&self) -> usize {
        PARTITION_SIZE as usize
    }
}

impl NorFlash for DataPartition {
    const WRITE_SIZE: usize = WORD_SIZE;
    const ERASE_SIZE: usize = SECTOR_SIZE as usize;

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let driver_offset = Self::check_range(offset, bytes.len(), WORD_SIZE as u32)?;
        self.flash.blocking_write(driver_offset, bytes)?;
        self.statistics.bytes_programmed += bytes.len() as u64;
        Ok(())
    }

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if to < from {
            return Err(Error::Size);
        }
        let driver_from = Self::check_range(from, (to - from) as usize, SECTOR_SIZE)?;
        self.flash.blocking_erase(driver_from, driver_from + (to - from))?;
        self.statistics.sectors_erased += u64::from((to - from) / SECTOR_SIZE);
        Ok(())
    }
}

impl FlashCounters for DataPartition {
    fn statistics(&self) -> FlashStatistics {
        self.statistics
    }
}
