//! Random bytes from the STM32H573's true random number generator (RNG, NIST SP 800-90B
//! entropy source), with its health checks and the continuous test kept in software.
//!
//! embassy-stm32 starts the RNG in the NIST-compliant configuration "A" with the health-test
//! thresholds RM0481 recommends (`RNG_HTCR`): the peripheral's own repetition-count and
//! adaptive-proportion tests then raise a seed error, and a clock error is raised when its
//! kernel clock (HSI48) is too slow; `next_u32` re-initialises the RNG on either. On top of
//! that, the software test older STM32 manuals ask for stays: the first word after enabling is
//! only a reference, and a word equal to the one before, or zero, is a failure. On any failure
//! the peripheral is re-initialised and the words since the last good one are thrown away, so a
//! caller never receives bytes from a stuck or failed source.

use embassy_stm32::peripherals::RNG;
use embassy_stm32::rng::Rng;
use embassy_stm32::Peri;
use homemx_board::{EntropyKind, EntropySource};

use crate::interrupts::Interrupts;

/// How many consecutive failures of the health checks are tolerated before the board gives
/// up (panics, which resets it). A healthy RNG practically never fails twice in a row.
const MAXIMUM_CONSECUTIVE_FAILURES: u32 = 16;

/// The hardware RNG, with the continuous test applied to every 32-bit word.
pub struct HardwareEntropy {
    generator: Rng<'static, RNG>,
    previous_word: u32,
    failures_since_boot: u32,
}

impl HardwareEntropy {
    /// Starts the RNG (48 MHz from the HSI48) and draws the first word, which is only
    /// kept for the comparison with the next one.
    pub fn new(peripheral: Peri<'static, RNG>) -> Self {
        let mut generator = Rng::new(peripheral, Interrupts);
        let previous_word = generator.next_u32();
        Self { generator, previous_word, failures_since_boot: 0 }
    }

    /// How many times the health checks failed since boot (for the status page and logs).
    pub fn failures_since_boot(&self) -> u32 {
        self.failures_since_boot
    }

    /// One word that passed the checks.
    fn next_checked_word(&mut self) -> u32 {
        let mut consecutive_failures = 0;
        loop {
            // `next_u32` re-initialises the peripheral by itself on a seed or clock error.
            let word = self.generator.next_u32();
            if word != 0 && word != self.previous_word {
                self.previous_word = word;
                return word;
            }
            consecutive_failures += 1;
            self.failures_since_boot = self.failures_since_boot.saturating_add(1);
            defmt::warn!("hardware RNG failed its continuous test; re-initialising it");
            assert!(
                consecutive_failures < MAXIMUM_CONSECUTIVE_FAILURES,
                "hardware RNG keeps failing its health checks"
            );
            self.generator.reset();
            // After a re-initialisation the first word is again only a reference.
            self.previous_word = self.generator.next_u32();
        }
    }
}

impl EntropySource for HardwareEntropy {
    fn fill_bytes(&mut self, buffer: &mut [u8]) {
        for chunk in buffer.chunks_mut(4) {
            let word = self.next_checked_word().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    fn kind(&self) -> EntropyKind {
        EntropyKind::Hardware
    }
}
