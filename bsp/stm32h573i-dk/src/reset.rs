//! System reset through the SCB, and why the chip last came out of reset (RCC_RSR).
//!
//! After any reset the reset handler wipes all RAM before anything else runs (the crate's
//! `ram-wipe` feature: `ram_wipe`'s `__pre_init`, then cortex-m-rt's `zero-init-ram`).

use embassy_stm32::pac;
use homemx_board::{ResetCause, ResetControl};

/// Resets the Cortex-M33 with `SYSRESETREQ` and reports the cause of the last reset.
pub struct SystemReset {
    cause: ResetCause,
}

impl SystemReset {
    /// Reads the reset flags from RCC_RSR, then clears them (`RMVF`) so that the next boot
    /// reports only the next reset. Call once at start-up.
    pub fn read_and_clear_cause() -> Self {
        let flags = pac::RCC.rsr().read();
        let cause = if flags.iwdgrstf() || flags.wwdgrstf() {
            ResetCause::Watchdog
        } else if flags.sftrstf() {
            ResetCause::Software
        } else if flags.borrstf() {
            // The H5 has no separate power-on flag: a power-on reset sets BORRSTF (with PINRSTF),
            // and so does a brown-out. Either way the supply went away and came back.
            ResetCause::PowerOn
        } else {
            // Only the pin flag (the NRST button or the debug probe), or the low-power
            // management reset: the board traits have no name for those.
            ResetCause::Unknown
        };
        pac::RCC.rsr().modify(|register| register.set_rmvf(true));
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
