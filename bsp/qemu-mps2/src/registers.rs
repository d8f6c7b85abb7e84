//! Memory-mapped 32-bit device registers at a fixed base address.

use core::ptr::{read_volatile, write_volatile};

/// A device's register block.
#[derive(Clone, Copy)]
pub struct RegisterBlock {
    base: usize,
}

impl RegisterBlock {
    /// The block at `base` (a device address of this board).
    pub const fn at(base: usize) -> Self {
        Self { base }
    }

    /// Reads the register at byte `offset`.
    pub fn read(self, offset: usize) -> u32 {
        // SAFETY: every RegisterBlock of this crate names a device of mps2-an386 and every
        // offset used is one of that device's registers.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    /// Writes the register at byte `offset`.
    pub fn write(self, offset: usize, value: u32) {
        // SAFETY: as for `read`.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }
}
