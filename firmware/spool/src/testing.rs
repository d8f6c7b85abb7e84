//! Test support: a simulated NOR flash that enforces NOR rules, counts operations and cuts power.
//!
//! [`SimulatedFlash`] is an in-memory NOR flash for host tests, fuzzing and the QEMU
//! end-to-end helpers. It enforces what real NOR does and what the `NorFlash` trait demands:
//! erase sets a whole sector to `0xFF`; a program can only clear bits, and each
//! `WRITE_SIZE` word may be programmed once per erase; every address is checked for alignment
//! and bounds. It counts reads, programs and erases, and it can cut the power at the N-th
//! program or erase: that operation is either dropped, completed, or left *torn* (a program
//! clears only some of the bits it should; an erase sets only some bits to 1), after which
//! every access fails until [`SimulatedFlash::restore_power`]. Clones share the same memory, so a test can
//! hand one clone to the spool and keep another to inspect, tamper with or "reboot" it.
//! Every program and erase is logged ([`SimulatedFlash::operation_log`]), so a power-cut test
//! can see what the N-th operation was (a sector header, a record of some kind, an erase) and
//! pick its cut points.
//!
//! Compiled with the `testing` feature (or in this crate's unit tests); it needs `std`.

extern crate std;

use core::cell::RefCell;
use embedded_storage_async::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

/// Why a simulated flash operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimulatedFlashError {
    /// Address or length not aligned to the flash's read, write or erase size.
    NotAligned,
    /// The range is outside the flash.
    OutOfBounds,
    /// A word was programmed twice without an erase in between.
    WordProgrammedTwice,
    /// The power was cut (at this operation or before it).
    PowerCut,
}

impl NorFlashError for SimulatedFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::NotAligned => NorFlashErrorKind::NotAligned,
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            Self::WordProgrammedTwice | Self::PowerCut => NorFlashErrorKind::Other,
        }
    }
}

/// How an operation hit by the power cut is left on flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutMode {
    /// The interrupted operation changes nothing.
    Clean,
    /// The interrupted operation is left half done (some bits changed, chosen by the seed).
    Torn,
    /// The operation completes and reports success; the power fails right after it (the
    /// caller learns of the cut at its next access).
    Completed,
}

/// What a program or erase did, as logged by [`SimulatedFlash::operation_log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// Bits cleared from `address` on; `prefix` holds the first (up to 4) bytes asked for,
    /// `0xFF` beyond the length.
    Program {
        /// The first bytes of the program.
        prefix: [u8; 4],
    },
    /// Sectors set to `0xFF`.
    Erase,
}

/// One program or erase (the one a power cut hit included), in the order they were asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedOperation {
    /// Program or erase.
    pub kind: OperationKind,
    /// The first byte address.
    pub address: u32,
    /// Bytes programmed or erased.
    pub length: u32,
}

/// Operation counters of a [`SimulatedFlash`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimulatedFlashCounters {
    /// Number of read calls.
    pub read_operations: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Number of program (write) calls.
    pub program_operations: u64,
    /// Bytes programmed.
    pub bytes_programmed: u64,
    /// Sectors erased.
    pub sectors_erased: u64,
}

struct FlashState {
    memory: Vec<u8>,
    /// One flag per write word: programmed since the last erase.
    programmed: Vec<bool>,
    counters: SimulatedFlashCounters,
    /// Programs and erases performed so far (the power-cut clock).
    mutating_operations: u64,
    /// One entry per tick of the power-cut clock.
    log: Vec<LoggedOperation>,
    cut_at: Option<(u64, CutMode)>,
    powered: bool,
    random_state: u64,
}

impl FlashState {
    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic per seed, good enough to pick torn bits.
        let mut value = self.random_state;
        value ^= value >> 12;
        value ^= value << 25;
        value ^= value >> 27;
        self.random_state = value;
        value.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Counts a program or erase; returns `Some(mode)` when this one is hit by the cut.
    fn tick(&mut self, operation: LoggedOperation) -> Result<Option<CutMode>, SimulatedFlashError> {
        if !self.powered {
            return Err(SimulatedFlashError::PowerCut);
        }
        self.mutating_operations += 1;
        self.log.push(operation);
        match self.cut_at {
            Some((at, mode)) if self.mutating_operations >= at => {
                self.powered = false;
                Ok(Some(mode))
            }
            _ => Ok(None),
        }
    }
}

/// An in-memory NOR flash with `WRITE` byte words and `ERASE` byte sectors (see module doc).
#[derive(Clone)]
pub struct SimulatedFlash<const WRITE: usize = 4, const ERASE: usize = 4096> {
    state: Rc<RefCell<FlashState>>,
}

impl<const WRITE: usize, const ERASE: usize> SimulatedFlash<WRITE, ERASE> {
    /// A fully erased flash of `capacity` bytes (a multiple of `ERASE`).
    pub fn new(capacity: usize) -> Self {
        assert!(capacity % ERASE == 0 && ERASE % WRITE == 0, "bad simulated geometry");
        Self {
            state: Rc::new(RefCell::new(FlashState {
                memory: vec![0xFF; capacity],
                programmed: vec![false; capacity / WRITE],
                counters: SimulatedFlashCounters::default(),
                mutating_operations: 0,
                log: Vec::new(),
                cut_at: None,
                powered: true,
                random_state: 0x9E37_79B9_7F4A_7C15,
            })),
        }
    }

    /// A flash holding `image` (padded with `0xFF`); words that are not all `0xFF` count as
    /// programmed. Used by the fuzz target to recover from arbitrary contents.
    pub fn from_image(capacity: usize, image: &[u8]) -> Self {
        let flash = Self::new(capacity);
        {
            let mut state = flash.state.borrow_mut();
            let length = image.len().min(capacity);
            state.memory[..length].copy_from_slice(&image[..length]);
            for word in 0..capacity / WRITE {
                let bytes = &state.memory[word * WRITE..(word + 1) * WRITE];
                let written = bytes.iter().any(|&byte| byte != 0xFF);
                state.programmed[word] = written;
            }
        }
        flash
    }

    /// Arms a power cut at the `operation`-th program or erase from now (1 = the next one).
    pub fn cut_power_at(&self, operation: u64, mode: CutMode, seed: u64) {
        let mut state = self.state.borrow_mut();
        let at = state.mutating_operations + operation;
        state.cut_at = Some((at, mode));
        state.random_state = seed | 1;
    }

    /// Switches the power back on and disarms any pending cut (a "reboot").
    pub fn restore_power(&self) {
        let mut state = self.state.borrow_mut();
        state.powered = true;
        state.cut_at = None;
    }

    /// Whether a power cut has happened and not been restored.
    pub fn power_is_cut(&self) -> bool {
        !self.state.borrow().powered
    }

    /// Programs and erases performed so far.
    pub fn mutating_operations(&self) -> u64 {
        self.state.borrow().mutating_operations
    }

    /// Every program and erase so far, in order: entry `N - 1` is the operation a cut armed
    /// with [`SimulatedFlash::cut_power_at`]`(N, ..)` on a fresh flash hits.
    pub fn operation_log(&self) -> Vec<LoggedOperation> {
        self.state.borrow().log.clone()
    }

    /// The operation counters.
    pub fn counters(&self) -> SimulatedFlashCounters {
        self.state.borrow().counters
    }

    /// A copy of the whole flash contents.
    pub fn snapshot(&self) -> Vec<u8> {
        self.state.borrow().memory.clone()
    }

    /// Flips one bit in place (a tamper or bit-rot simulation; not a NOR operation).
    pub fn flip_bit(&self, address: usize, bit: u8) {
        let mut state = self.state.borrow_mut();
        state.memory[address] ^= 1 << (bit % 8);
    }

    /// Overwrites bytes in place, bypassing NOR rules (an attacker with a programmer).
    pub fn overwrite(&self, address: usize, bytes: &[u8]) {
        let mut state = self.state.borrow_mut();
        state.memory[address..address + bytes.len()].copy_from_slice(bytes);
    }

    fn check(&self, offset: u32, length: usize, align: usize) -> Result<usize, SimulatedFlashError> {
        let offset = offset as usize;
        if offset % align != 0 || length % align != 0 {
            return Err(SimulatedFlashError::NotAligned);
        }
        let capacity = self.state.borrow().memory.len();
        if offset.checked_add(length).is_none_or(|end| end > capacity) {
            return Err(SimulatedFlashError::OutOfBounds);
        }
        Ok(offset)
    }
}

impl<const WRITE: usize, const ERASE: usize> ErrorType for SimulatedFlash<WRITE, ERASE> {
    type Error = SimulatedFlashError;
}

impl<const WRITE: usize, const ERASE: usize> ReadNorFlash for SimulatedFlash<WRITE, ERASE> {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let start = self.check(offset, bytes.len(), 1)?;
        let mut state = self.state.borrow_mut();
        if !state.powered {
            return Err(SimulatedFlashError::PowerCut);
        }
        bytes.copy_from_slice(&state.memory[start..start + bytes.len()]);
        state.counters.read_operations += 1;
        state.counters.bytes_read += bytes.len() as u64;
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.state.borrow().memory.len()
    }
}

impl<const WRITE: usize, const ERASE: usize> NorFlash for SimulatedFlash<WRITE, ERASE> {
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if to < from {
            return Err(SimulatedFlashError::OutOfBounds);
        }
        let start = self.check(from, (to - from) as usize, ERASE)?;
        let end = to as usize;
        let mut state = self.state.borrow_mut();
        let cut = state.tick(LoggedOperation { kind: OperationKind::Erase, address: from, length: to - from })?;
        match cut {
            None | Some(CutMode::Completed) => {
                state.memory[start..end].fill(0xFF);
                state.programmed[start / WRITE..end / WRITE].fill(false);
                state.counters.sectors_erased += ((end - start) / ERASE) as u64;
                Ok(())
            }
            Some(CutMode::Clean) => Err(SimulatedFlashError::PowerCut),
            Some(CutMode::Torn) => {
                // Interrupted erase: bits drift towards 1 at random; nothing is reliable.
                for address in start..end {
                    let mask = state.next_random() as u8;
                    state.memory[address] |= mask;
                }
                Err(SimulatedFlashError::PowerCut)
            }
        }
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let start = self.check(offset, bytes.len(), WRITE)?;
        let mut state = self.state.borrow_mut();
        let first_word = start / WRITE;
        let words = bytes.len() / WRITE;
        if !state.powered {
            return Err(SimulatedFlashError::PowerCut);
        }
        if state.programmed[first_word..first_word + words].iter().any(|&done| done) {
            return Err(SimulatedFlashError::WordProgrammedTwice);
        }
        let mut prefix = [0xFF; 4];
        let shown = bytes.len().min(prefix.len());
        prefix[..shown].copy_from_slice(&bytes[..shown]);
        let cut = state.tick(LoggedOperation { kind: OperationKind::Program { prefix }, address: offset, length: bytes.len() as u32 })?;
        match cut {
            None | Some(CutMode::Completed) => {
                for (index, &byte) in bytes.iter().enumerate() {
                    state.memory[start + index] &= byte;
                }
                state.programmed[first_word..first_word + words].fill(true);
                state.counters.program_operations += 1;
                state.counters.bytes_programmed += bytes.len() as u64;
                Ok(())
            }
            Some(CutMode::Clean) => Err(SimulatedFlashError::PowerCut),
            Some(CutMode::Torn) => {
                // Interrupted program: only some of the bits that should clear do.
                // Real parts program page by page, so a prefix is done, then a partial page.
                let done = (state.next_random() as usize) % (bytes.len() + 1);
                for (index, &byte) in bytes.iter().enumerate() {
                    let target = if index < done {
                        byte
                    } else {
                        byte | state.next_random() as u8
                    };
                    state.memory[start + index] &= target;
                }
                Err(SimulatedFlashError::PowerCut)
            }
        }
    }
}

/// A deterministic random source for tests (never for the product: it is predictable).
pub struct TestRandom {
    state: u64,
}

impl TestRandom {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed | 1 }
    }
}

impl crate::RandomSource for TestRandom {
    fn fill_bytes(&mut self, buffer: &mut [u8]) {
        for byte in buffer.iter_mut() {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *byte = (self.state >> 24) as u8;
        }
    }
}

/// Runs a future to completion on the current thread (the simulated flash never waits).
pub fn block_on<T>(future: impl core::future::Future<Output = T>) -> T {
    use core::pin::pin;
    use core::task::{Context, Poll, Waker};
    let mut context = Context::from_waker(Waker::noop());
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut context) {
            return value;
        }
    }
}
