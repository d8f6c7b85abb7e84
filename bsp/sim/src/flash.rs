//! The device's flash: the project's simulated NOR flash (`homemx_spool::testing`), sized and
//! shaped as [`crate::FLASH_MAP`], behind the board's flash traits as two windows of the one
//! chip: the key flash (the key store's sectors first) and the data flash (the rest).
//!
//! The model is the one the stores' own tests use, so there is one copy of the NOR rules:
//! erase sets whole 4 KiB sectors to `0xFF`; a program can only clear bits and each 4-byte
//! word may be programmed once per erase (a second program is refused with
//! `WordProgrammedTwice`, which also refuses any attempt to turn a 0 back into a 1); every
//! address is checked for alignment and bounds (`NotAligned`, `OutOfBounds`; errors, not
//! panics, as a flash driver reports them). `MultiwriteNorFlash` is not implemented: the model
//! does not allow re-programming a word, so claiming it would be untrue.
//!
//! The simulator keeps a [`FlashModel`] handle (clones share the memory) to schedule power
//! cuts (`cut_power_at`: the N-th program or erase is left untouched, completed or torn,
//! after which every access fails until `restore_power`), to read the operation log and the
//! counters, and to take a snapshot of every byte (to check that nothing on flash is
//! plaintext, or to start another run from the same image with `FlashModel::from_image`).
//! Operations also fail once the boot's [`DevicePower`] is off.
//!
//! Owns nothing but the device's handle. Calls: the flash model.

use embedded_storage_async::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use homemx_board::{FlashCounters, FlashStatistics};
pub use homemx_spool::testing::{CutMode, LoggedOperation, OperationKind, SimulatedFlashCounters, SimulatedFlashError};

use send_wrapper::SendWrapper;

use crate::power::DevicePower;

/// Program granularity (as on the QEMU board).
pub const WORD_SIZE: usize = 4;
/// Erase sector size.
pub const SECTOR_SIZE: usize = 4096;

/// The simulated NOR chip (the simulator's handle; clones share the memory).
pub type FlashModel = homemx_spool::testing::SimulatedFlash<WORD_SIZE, SECTOR_SIZE>;

/// The device's flash for one boot.
///
/// The services keep their flash in statics (`Mutex`es), which asks for `Send`; the model is
/// single-threaded (`Rc`). `SendWrapper` makes the handle `Send` soundly: every use and the
/// drop from any thread but the one that booted the device panics. A simulation runs on one
/// thread, so none does.
pub struct SimFlash {
    model: SendWrapper<FlashModel>,
    power: SendWrapper<DevicePower>,
    /// The window's first byte in the model.
    start: u32,
    /// The window's length.
    length: u32,
    /// The model's counters when the boot began (the board's statistics count since boot; both
    /// windows report the chip's).
    at_boot: SimulatedFlashCounters,
}

impl SimFlash {
    /// The window `start..start + length` of the model (addresses from 0).
    pub(crate) fn window(model: FlashModel, power: DevicePower, start: u32, length: u32) -> Self {
        let at_boot = model.counters();
        Self { model: SendWrapper::new(model), power: SendWrapper::new(power), start, length, at_boot }
    }

    /// The model's address of `offset..offset + length` in the window.
    fn translate(&self, offset: u32, length: usize) -> Result<u32, SimulatedFlashError> {
        let end = u32::try_from(length).ok().and_then(|length| offset.checked_add(length));
        match end {
            Some(end) if end <= self.length => Ok(self.start + offset),
            _ => Err(SimulatedFlashError::OutOfBounds),
        }
    }

    fn check_power(&self) -> Result<(), SimulatedFlashError> {
        if self.power.is_on() {
            Ok(())
        } else {
            Err(SimulatedFlashError::PowerCut)
        }
    }
}

impl ErrorType for SimFlash {
    type Error = SimulatedFlashError;
}

impl ReadNorFlash for SimFlash {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.check_power()?;
        let at = self.translate(offset, bytes.len())?;
        self.model.read(at, bytes).await
    }

    fn capacity(&self) -> usize {
        self.length as usize
    }
}

impl NorFlash for SimFlash {
    const WRITE_SIZE: usize = WORD_SIZE;
    const ERASE_SIZE: usize = SECTOR_SIZE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.check_power()?;
        let at = self.translate(from, to.checked_sub(from).ok_or(SimulatedFlashError::OutOfBounds)? as usize)?;
        self.model.erase(at, at + (to - from)).await
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.check_power()?;
        let at = self.translate(offset, bytes.len())?;
        self.model.write(at, bytes).await
    }
}

impl FlashCounters for SimFlash {
    fn statistics(&self) -> FlashStatistics {
        let counters = self.model.counters();
        FlashStatistics {
            bytes_programmed: counters.bytes_programmed - self.at_boot.bytes_programmed,
            sectors_erased: counters.sectors_erased - self.at_boot.sectors_erased,
            bytes_read: counters.bytes_read - self.at_boot.bytes_read,
        }
    }
}
