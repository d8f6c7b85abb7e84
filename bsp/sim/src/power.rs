//! The device's power rail: one switch that every part of one boot checks.
//!
//! Power goes off in two ways: the flash model cuts it at a scheduled operation
//! ([`crate::World::cut_flash_power_at`]), or the simulator switches it off at any moment
//! ([`DevicePower::switch_off`]). Either way the Ethernet port stops sending and receiving,
//! the console drops output, and flash operations fail, from that instant on, even for code
//! of the dead boot that still runs in the same poll. Once seen off, a boot's power stays off:
//! the next boot gets a fresh rail ([`crate::World::boot`]) after the flash's power is restored.
//!
//! Owns the switch. Calls: the question the world gives it (has the flash model cut the power?).

use std::cell::Cell;
use std::rc::Rc;


/// The power rail of one boot (clones share it).
#[derive(Clone)]
pub struct DevicePower {
    switched_off: Rc<Cell<bool>>,
    /// Whether the flash model has cut the power (the world's question; kept as a closure so
    /// that the rail need not know the flash, which checks the rail).
    flash_power_cut: Rc<dyn Fn() -> bool>,
}

impl DevicePower {
    pub(crate) fn new(flash_power_cut: impl Fn() -> bool + 'static) -> Self {
        Self { switched_off: Rc::new(Cell::new(false)), flash_power_cut: Rc::new(flash_power_cut) }
    }

    /// Whether the boot still has power (latches off when the flash model has cut it).
    pub fn is_on(&self) -> bool {
        if !self.switched_off.get() && (self.flash_power_cut)() {
            self.switched_off.set(true);
        }
        !self.switched_off.get()
    }

    /// Switches the boot's power off for good (the flash's own power is left as it is: the
    /// interrupted boot simply does nothing more).
    pub fn switch_off(&self) {
        self.switched_off.set(true);
    }
}
