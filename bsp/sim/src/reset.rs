//! Resetting the simulated device: the reset unwinds out of the device's executor, which the
//! loop then halts for good; the simulator boots the device again.
//!
//! On the host, `ResetControl::reset` panics with a [`DeviceReset`] payload
//! (`std::panic::panic_any`). [`crate::executor::SimExecutor::poll`] catches exactly that
//! payload, halts the executor (its tasks are never polled again, like a CPU that left them)
//! and reports the reset; the simulator then calls [`crate::World::boot`] on a fresh
//! executor. Any other panic propagates as a test failure. What a real reset also does (RAM
//! zeroed before anything runs) has no counterpart here: the abandoned tasks' memory stays
//! leaked and unread. A panic hook that wants to stay quiet on resets can check
//! [`is_device_reset`].
//!
//! Owns nothing. Calls: std's panic machinery.

use std::any::Any;

use homemx_board::{HardwareRamWipe, ResetCause, ResetControl};

/// The panic payload of a simulated reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceReset {
    /// The boot that reset itself (see [`crate::World::boot`]: 1 is the first).
    pub boot: u32,
}

/// Whether a panic payload is a simulated reset.
pub fn is_device_reset(payload: &(dyn Any + Send)) -> bool {
    payload.is::<DeviceReset>()
}

/// The device's reset control for one boot.
pub struct SimReset {
    pub(crate) boot: u32,
    pub(crate) cause: ResetCause,
}

impl ResetControl for SimReset {
    fn reset(&self) -> ! {
        std::panic::panic_any(DeviceReset { boot: self.boot })
    }

    fn cause(&self) -> ResetCause {
        self.cause
    }

    fn hardware_ram_wipe(&self) -> HardwareRamWipe {
        // A host process has no SRAM of its own to erase.
        HardwareRamWipe::NotAvailable
    }
}
