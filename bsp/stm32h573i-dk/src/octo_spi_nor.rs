//! The kit's 64 MB Octo-SPI NOR (Macronix MX25LM51245G on OCTOSPI1) as an async NOR flash with
//! 4 KiB sectors that counts its own program and erase work: the board's data flash (the
//! key-value store and the spool, `partition_map::FLASH_MAP`).
//!
//! **Compiled and wired (`crate::init`), never run.** Nothing here has met the chip.
//!
//! The memory starts in SPI mode at power-on (its configuration register 2 is volatile) and
//! this driver never leaves it. A firmware that switched it to octal mode (ST's demonstration
//! on the kit as shipped may) leaves it there across a reset of the MCU: 1-line commands are
//! then not understood, `RDID` fails and `init` reports `OctoSpiNor`. Power-cycle the kit once
//! after flashing over such a firmware.
//!
//! The memory is driven in its power-on mode, 1-line SPI at single transfer rate, through
//! embassy-stm32's blocking indirect-mode OCTOSPI driver, with the 4-byte-address commands of
//! the MX25LM51245G datasheet: `READ4B` (0x13, no dummy cycles, up to 50 MHz), `PP4B` (0x12, at
//! most one 256-byte page per command), `SE4B` (0x21, one 4 KiB sector), `WREN` (0x06), `RDSR`
//! (0x05, bit 0 = write in progress), `RDSCUR` (0x2B, bit 5 = program failed, bit 6 = erase
//! failed), `RDID` (0x9F), `RSTEN`/`RST` (0x66/0x99). Octal DTR would be faster; the spool's load
//! (a few hundred bytes per message) does not need it.
//!
//! Pins (as ST's STM32H573I-DK Octo-SPI examples configure them; only four are used in 1-line
//! mode): CLK PF10, NCS PG6, IO0 (SI) PB1, IO1 (SO) PD12. The other lanes, IO2 PC2, IO3 PD13,
//! IO4 PH2, IO5 PH3, IO6 PG9, IO7 PC0 and DQS PB2, stay unconfigured.
//!
//! `write` and `erase` run to completion inside the async call (a sector erase takes tens of
//! milliseconds, up to 400 ms by the datasheet): the executor runs nothing else meanwhile.

use embassy_stm32::mode::Blocking;
use embassy_stm32::ospi::{
    AddressSize, ChipSelectHighTime, Config, DummyCycles, FIFOThresholdLevel, MemorySize, MemoryType, Ospi, OspiError, OspiWidth,
    TransferConfig, WrapSize,
};
use embassy_stm32::peripherals::{OCTOSPI1, PB1, PD12, PF10, PG6};
use embassy_stm32::Peri;
use embedded_storage::nor_flash::{NorFlashError, NorFlashErrorKind};
use embedded_storage_async::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use homemx_board::{FlashCounters, FlashStatistics};

use crate::partition_map::{check_octo_spi_nor_range, octo_spi_nor_page_chunk, RangeError, OCTO_SPI_NOR_SECTOR_SIZE, OCTO_SPI_NOR_SIZE};

/// The JEDEC identifier the MX25LM51245G answers to `RDID`: Macronix, the octal family, 512 Mbit.
pub const JEDEC_IDENTIFIER: [u8; 3] = [0xC2, 0x85, 0x3A];
/// Program unit offered to the stores (the NOR programs single bytes; 4 matches the QEMU board).
pub const WORD_SIZE: usize = crate::partition_map::OCTO_SPI_NOR_WORD_SIZE;
/// OCTOSPI kernel clock (HCLK, 250 MHz) divided by 6: 41.7 MHz, below `READ4B`'s 50 MHz.
const CLOCK_PRESCALER: u8 = 5;

const READ_4_BYTE_ADDRESS: u32 = 0x13;
const PAGE_PROGRAM_4_BYTE_ADDRESS: u32 = 0x12;
const SECTOR_ERASE_4_BYTE_ADDRESS: u32 = 0x21;
const WRITE_ENABLE: u32 = 0x06;
const READ_STATUS: u32 = 0x05;
const READ_SECURITY: u32 = 0x2B;
const READ_IDENTIFIER: u32 = 0x9F;
const RESET_ENABLE: u32 = 0x66;
const RESET_MEMORY: u32 = 0x99;
const STATUS_WRITE_IN_PROGRESS: u8 = 0x01;
const SECURITY_PROGRAM_FAILED: u8 = 0x20;
const SECURITY_ERASE_FAILED: u8 = 0x40;

/// Why an operation on the NOR failed.
#[derive(Debug, defmt::Format)]
pub enum OctoSpiNorError {
    /// The OCTOSPI peripheral refused the command.
    Peripheral(OspiError),
    /// The address or length is not a multiple of the operation's unit.
    NotAligned,
    /// The range runs past the end of the memory.
    OutOfBounds,
    /// The memory reported a failed program (`RDSCUR` P_FAIL).
    ProgramFailed,
    /// The memory reported a failed erase (`RDSCUR` E_FAIL).
    EraseFailed,
    /// `RDID` did not answer the MX25LM51245G's identifier.
    UnexpectedIdentifier([u8; 3]),
}

impl From<OspiError> for OctoSpiNorError {
    fn from(error: OspiError) -> Self {
        Self::Peripheral(error)
    }
}

impl From<RangeError> for OctoSpiNorError {
    fn from(error: RangeError) -> Self {
        match error {
            RangeError::NotAligned => Self::NotAligned,
            RangeError::OutOfBounds => Self::OutOfBounds,
        }
    }
}

impl NorFlashError for OctoSpiNorError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::NotAligned => NorFlashErrorKind::NotAligned,
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// The four pins of 1-line SPI and the peripheral.
pub struct OctoSpiPins {
    /// OCTOSPI1.
    pub peripheral: Peri<'static, OCTOSPI1>,
    /// CLK.
    pub clock: Peri<'static, PF10>,
    /// NCS.
    pub chip_select: Peri<'static, PG6>,
    /// IO0: the memory's serial input in 1-line mode.
    pub data_0: Peri<'static, PB1>,
    /// IO1: the memory's serial output in 1-line mode.
    pub data_1: Peri<'static, PD12>,
}

/// The whole MX25LM51245G, addresses from 0.
pub struct OctoSpiNor {
    bus: Ospi<'static, OCTOSPI1, Blocking>,
    statistics: FlashStatistics,
}

/// A command with a 1-line instruction and nothing else set.
fn instruction(code: u32) -> TransferConfig {
    TransferConfig { iwidth: OspiWidth::SING, instruction: Some(code), ..TransferConfig::default() }
}

/// A command with a 1-line instruction and a 4-byte 1-line address.
fn instruction_with_address(code: u32, address: u32) -> TransferConfig {
    TransferConfig {
        adwidth: OspiWidth::SING,
        address: Some(address),
        adsize: AddressSize::_32bit,
        ..instruction(code)
    }
}

/// The same, with 1-line data after the address.
fn instruction_with_address_and_data(code: u32, address: u32) -> TransferConfig {
    TransferConfig { dwidth: OspiWidth::SING, dummy: DummyCycles::_0, ..instruction_with_address(code, address) }
}

/// A 1-line instruction followed by 1-line data (register reads).
fn instruction_with_data(code: u32) -> TransferConfig {
    TransferConfig { dwidth: OspiWidth::SING, ..instruction(code) }
}

impl OctoSpiNor {
    /// Starts OCTOSPI1 in 1-line mode, resets the memory with the 1-line reset (ends a program
    /// or erase a reset of the MCU interrupted; a memory in octal mode does not understand it,
    /// see the module documentation) and checks its identifier.
    pub fn new(pins: OctoSpiPins) -> Result<Self, OctoSpiNorError> {
        let config = Config {
            fifo_threshold: FIFOThresholdLevel::_4Bytes,
            memory_type: MemoryType::Micron,
            device_size: MemorySize::_64MiB,
            chip_select_high_time: ChipSelectHighTime::_2Cycle,
            free_running_clock: false,
            clock_mode: false,
            wrap_size: WrapSize::None,
            clock_prescaler: CLOCK_PRESCALER,
            sample_shifting: false,
            delay_hold_quarter_cycle: false,
            chip_select_boundary: 0,
            delay_block_bypass: true,
            max_transfer: 0,
            refresh: 0,
        };
        let bus = Ospi::new_blocking_singlespi(pins.peripheral, pins.clock, pins.data_0, pins.data_1, pins.chip_select, config);
        let mut nor = Self { bus, statistics: FlashStatistics::default() };
        nor.bus.blocking_command(&instruction(RESET_ENABLE))?;
        nor.bus.blocking_command(&instruction(RESET_MEMORY))?;
        // tSHSL after a reset during an erase can be 25 ms (datasheet); wait for WIP to clear.
        nor.wait_until_ready()?;
        let identifier = nor.identifier()?;
        if identifier != JEDEC_IDENTIFIER {
            return Err(OctoSpiNorError::UnexpectedIdentifier(identifier));
        }
        Ok(nor)
    }

    /// The JEDEC identifier (`RDID`).
    pub fn identifier(&mut self) -> Result<[u8; 3], OctoSpiNorError> {
        let mut identifier = [0u8; 3];
        self.bus.blocking_read(&mut identifier, instruction_with_data(READ_IDENTIFIER))?;
        Ok(identifier)
    }

    fn read_register(&mut self, code: u32) -> Result<u8, OctoSpiNorError> {
        let mut value = [0u8; 1];
        self.bus.blocking_read(&mut value, instruction_with_data(code))?;
        Ok(value[0])
    }

    fn wait_until_ready(&mut self) -> Result<(), OctoSpiNorError> {
        while self.read_register(READ_STATUS)? & STATUS_WRITE_IN_PROGRESS != 0 {}
        Ok(())
    }

    /// Sends `WREN`, runs `command` (with `data`, if any), waits until the memory is done and
    /// checks the security register's failure bit `failed`.
    fn program_or_erase(&mut self, command: TransferConfig, data: Option<&[u8]>, failed: u8) -> Result<(), OctoSpiNorError> {
        self.bus.blocking_command(&instruction(WRITE_ENABLE))?;
        match data {
            Some(bytes) => self.bus.blocking_write(bytes, command)?,
            None => self.bus.blocking_command(&command)?,
        }
        self.wait_until_ready()?;
        if self.read_register(READ_SECURITY)? & failed != 0 {
            return Err(if failed == SECURITY_ERASE_FAILED { OctoSpiNorError::EraseFailed } else { OctoSpiNorError::ProgramFailed });
        }
        Ok(())
    }
}

impl ErrorType for OctoSpiNor {
    type Error = OctoSpiNorError;
}

impl ReadNorFlash for OctoSpiNor {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let length = u32::try_from(bytes.len()).map_err(|_| OctoSpiNorError::OutOfBounds)?;
        check_octo_spi_nor_range(offset, length, 1)?;
        if bytes.is_empty() {
            return Ok(());
        }
        self.bus.blocking_read(bytes, instruction_with_address_and_data(READ_4_BYTE_ADDRESS, offset))?;
        self.statistics.bytes_read += bytes.len() as u64;
        Ok(())
    }

    fn capacity(&self) -> usize {
        OCTO_SPI_NOR_SIZE as usize
    }
}

impl NorFlash for OctoSpiNor {
    const WRITE_SIZE: usize = WORD_SIZE;
    const ERASE_SIZE: usize = OCTO_SPI_NOR_SECTOR_SIZE as usize;

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let length = u32::try_from(bytes.len()).map_err(|_| OctoSpiNorError::OutOfBounds)?;
        check_octo_spi_nor_range(offset, length, WORD_SIZE as u32)?;
        let mut written = 0;
        while written < length {
            let chunk = octo_spi_nor_page_chunk(offset + written, length - written);
            let data = &bytes[written as usize..(written + chunk) as usize];
            let command = instruction_with_address_and_data(PAGE_PROGRAM_4_BYTE_ADDRESS, offset + written);
            self.program_or_erase(command, Some(data), SECURITY_PROGRAM_FAILED)?;
            written += chunk;
        }
        self.statistics.bytes_programmed += u64::from(length);
        Ok(())
    }

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if to < from {
            return Err(OctoSpiNorError::OutOfBounds);
        }
        check_octo_spi_nor_range(from, to - from, OCTO_SPI_NOR_SECTOR_SIZE)?;
        for sector in (from..to).step_by(OCTO_SPI_NOR_SECTOR_SIZE as usize) {
            self.program_or_erase(instruction_with_address(SECTOR_ERASE_4_BYTE_ADDRESS, sector), None, SECURITY_ERASE_FAILED)?;
            self.statistics.sectors_erased += 1;
        }
        Ok(())
    }
}

impl FlashCounters for OctoSpiNor {
    fn statistics(&self) -> FlashStatistics {
        self.statistics
    }
}
