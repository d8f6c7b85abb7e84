//! The board's data partition: the seven 128 KiB sectors at the top of the STM32F429ZI's
//! internal flash bank 2 (`0x0812_0000..0x0820_0000`, 896 KiB), as an async NOR flash that
//! counts its own program and erase work.
//!
//! The 2 MiB of internal flash are two banks of 1 MiB. The firmware image is linked into
//! bank 1 (`memory.x` allows only bank 1), so while this partition is erased (a 128 KiB
//! sector takes 1–2 s) or programmed, the CPU keeps fetching code from the other bank:
//! read-while-write, no stall of the network or the console. Bank 2's small sectors 12–16
//! (`0x0810_0000..0x0812_0000`, 4 × 16 KiB + 64 KiB) are left free for the board (e.g. a
//! boot-state page later) so that every sector of the partition has the same size, which
//! is what [`NorFlash::ERASE_SIZE`] can express.
//!
//! Programming and erasing go through embassy-stm32's interrupt-driven flash driver (the F4
//! has an async one); reads are plain memory reads through the same driver, which also
//! refuses bank-2 reads on chip revisions hit by erratum 2.2.11 (see [`crate::InitError`]).

use embassy_stm32::flash::{Async, Error, Flash, WRITE_SIZE};
use embedded_storage_async::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use homemx_board::{FlashCounters, FlashStatistics};

/// Address of the chip's internal flash.
pub const FLASH_START_ADDRESS: u32 = 0x0800_0000;
/// First address of the partition: sector 17, the first 128 KiB sector of bank 2.
pub const PARTITION_START_ADDRESS: u32 = 0x0812_0000;
/// One past the last address of the partition: the end of bank 2 (sector 23).
pub const PARTITION_END_ADDRESS: u32 = 0x0820_0000;
/// Size of the partition in bytes (896 KiB).
pub const PARTITION_SIZE: u32 = PARTITION_END_ADDRESS - PARTITION_START_ADDRESS;
/// Erase unit: one 128 KiB sector.
pub const SECTOR_SIZE: u32 = 128 * 1024;
/// Program unit (the driver programs 32-bit words, `PSIZE` = x32).
pub const WORD_SIZE: usize = WRITE_SIZE;

const _: () = assert!(PARTITION_SIZE.is_multiple_of(SECTOR_SIZE));
const _: () = assert!(PARTITION_START_ADDRESS.is_multiple_of(SECTOR_SIZE));

/// Offset of the partition inside the flash driver's address space (which starts at
/// [`FLASH_START_ADDRESS`]).
const PARTITION_OFFSET: u32 = PARTITION_START_ADDRESS - FLASH_START_ADDRESS;

/// The data partition in bank 2. Addresses given to it start at zero.
pub struct DataPartition {
    flash: Flash<'static, Async>,
    statistics: FlashStatistics,
}

impl DataPartition {
    /// Takes the chip's flash driver; only the partition's range is ever touched through it.
    pub fn new(flash: Flash<'static, Async>) -> Self {
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
        self.flash.write(driver_offset, bytes).await?;
        self.statistics.bytes_programmed += bytes.len() as u64;
        Ok(())
    }

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if to < from {
            return Err(Error::Size);
        }
        let driver_from = Self::check_range(from, (to - from) as usize, SECTOR_SIZE)?;
        self.flash.erase(driver_from, driver_from + (to - from)).await?;
        self.statistics.sectors_erased += u64::from((to - from) / SECTOR_SIZE);
        Ok(())
    }
}

impl FlashCounters for DataPartition {
    fn statistics(&self) -> FlashStatistics {
        self.statistics
    }
}
