//! System reset through the SCB, and why the chip last came out of reset (RCC_CSR).
//!
//! After any reset the reset handler wipes all RAM before anything else runs (the crate's
//! `ram-wipe` feature: cortex-m-rt's `zero-init-ram` for the SRAM, [`crate`]'s `__pre_init`
//! for the CCM RAM).

use embassy_stm32::pac;
use homemx_board::{ResetCause, ResetControl};

/// Resets the Cortex-M4 with `SYSRESETREQ` and reports the cause of the last reset.
pub struct SystemReset {
    cause: ResetCause,
}

impl SystemReset {
    /// Reads the reset flags from RCC_CSR, then clears them (`RMVF`) so that the next boot
    /// reports only the next reset. Call once at start-up.
    pub fn read_and_clear_cause() -> Self {
        let flags = pac::RCC.csr().read();
        let cause = if flags.wdgrstf() || flags.wwdgrstf() {
            ResetCause::Watchdog
        } else if flags.sftrstf() {
            ResetCause::Software
        } else if flags.porrstf() || flags.borrstf() {
            // A power-on reset sets both POR and BOR flags; a brown-out only BOR. Either way the
            // supply went away and came back.
            ResetCause::PowerOn
        } else {
            // Only the pin flag (the NRST button or the debug probe), or the low-power
            // management reset: the board traits have no name for those.
            ResetCause::Unknown
        };
        pac::RCC.csr().modify(|register| register.set_rmvf(true));
        Self { cause }
    }
}

impl ResetControl for SystemReset {
    fn reset(&self) -> ! {
        cortex_m::peripheral::SCB::sys_reset()
    }

    fn cause(&self) -> ResetCause {
        self.cause
    }
}
