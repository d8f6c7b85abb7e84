//! System reset through the SCB; the reset handler then wipes all RAM (see the crate's
//! `ram-wipe` feature and `cortex-m-rt`'s `zero-init-ram`).

use homemx_board::{HardwareRamWipe, ResetCause, ResetControl};

/// Resets the Cortex-M4 with `SYSRESETREQ`.
pub struct SystemReset;

impl ResetControl for SystemReset {
    fn reset(&self) -> ! {
        cortex_m::peripheral::SCB::sys_reset()
    }

    fn cause(&self) -> ResetCause {
        // The mps2 FPGA system control block has no reset-cause register in QEMU.
        ResetCause::Unknown
    }

    fn hardware_ram_wipe(&self) -> HardwareRamWipe {
        // QEMU's mps2 machine has no option bytes: the software wipe at reset is all there is.
        HardwareRamWipe::NotAvailable
    }
}
