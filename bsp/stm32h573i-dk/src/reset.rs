//! System reset through the SCB, and why the chip last came out of reset (RCC_RSR).
//!
//! After any reset the reset handler wipes all RAM before anything else runs (the crate's
//! `ram-wipe` feature: `ram_wipe`'s `__pre_init`, then cortex-m-rt's `zero-init-ram`). The
//! chip erases its SRAM at reset too when its option bytes say so: read from
//! `FLASH_OPTSR2_CUR` and decoded by `option_bytes`.

use embassy_stm32::pac;
use homemx_board::{HardwareRamWipe, ResetCause, ResetControl};

use crate::option_bytes;

// The bits `option_bytes` decodes are the PAC's `SRAM1_3_RST` and `SRAM2_RST`.
const _: () = assert!(pac::flash::regs::Optsr2(option_bytes::SRAM1_3_RST).sram13_rst() && !pac::flash::regs::Optsr2(option_bytes::SRAM1_3_RST).sram2_rst());
const _: () = assert!(pac::flash::regs::Optsr2(option_bytes::SRAM2_RST).sram2_rst() && !pac::flash::regs::Optsr2(option_bytes::SRAM2_RST).sram13_rst());

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

    fn hardware_ram_wipe(&self) -> HardwareRamWipe {
        option_bytes::hardware_ram_wipe(pac::FLASH.optsr2_cur().read().0)
    }
}
