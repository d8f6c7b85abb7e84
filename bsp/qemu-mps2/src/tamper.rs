//! The tamper loop of the QEMU board: pin 0 of a PCA9552 I²C expander at address `0x60` on the
//! bus of the SBCon (ARM's two-wire serial bus controller) at `0x4002_A000`.
//!
//! mps2-an386 has no GPIO model, but QEMU lets the harness plug a PCA9552 onto the SBCon's bus
//! (`-device pca9552,bus=i2c,address=0x60,id=tamper`) and drive its pin from outside the guest
//! (QMP `qom-set /machine/peripheral/tamper led0 on|off`): the emulated hardware a test
//! toggles, as a door contact would.
//!
//! The SBCon is a bit-banged controller: writing 1s to `CONTROLS` (offset `0x0`) sets lines,
//! to `CONTROLC` (`0x4`) clears them, and reading offset `0x0` gives SCL (bit 0, as driven)
//! and SDA (bit 1, the wire: low if we or the device pull it low). [`Sbcon`] drives the lines,
//! `homemx_board::bitbang_i2c` speaks I²C over them (its host tests check the bit sequence
//! against a device model), [`Pca9552Loop`] reads the expander's
//! `INPUT0` register (`0x00`) once per [`homemx_board::TamperLoop::state`] (about 40 register
//! accesses, no waiting: QEMU's bus model answers at once).
//!
//! Pin 0 reads 0 while the loop is closed: QEMU's expander comes out of reset with every pin
//! "off" (`LS0 = 0x55`), which its `INPUT0` reports as 0, the level a normally-closed loop to
//! ground holds; `led0 on` (the loop opened) reads 1. Checked in the guest, see the `tamper`
//! e2e test. The firmware never writes the expander's LED selectors (that would drive the pin).
//! Without the expander the address is not acknowledged: no tamper loop is fitted.
//!
//! Owns: the SBCon at `0x4002_A000`. Calls: `registers`.

use homemx_board::bitbang_i2c::{read_register, Lines};
use homemx_board::{TamperLoop, TamperState};

use crate::registers::RegisterBlock;

/// The I²C address the harness gives the expander.
pub const PCA9552_ADDRESS: u8 = 0x60;
/// The expander's register with pins 0–7's levels.
pub const INPUT0: u8 = 0x00;

const SCL: u32 = 1 << 0;
const SDA: u32 = 1 << 1;
const CONTROLS: usize = 0x0;
const CONTROLC: usize = 0x4;

/// The SBCon bit-banged controller at `0x4002_A000` (QEMU's `versatile_i2c`).
pub struct Sbcon {
    registers: RegisterBlock,
}

impl Sbcon {
    /// The SBCon whose bus carries the harness's expander.
    pub const fn shield_1() -> Self {
        Self { registers: RegisterBlock::at(0x4002_A000) }
    }
}

impl Lines for Sbcon {
    fn set_clock(&mut self, high: bool) {
        self.registers.write(if high { CONTROLS } else { CONTROLC }, SCL);
    }

    fn set_data(&mut self, high: bool) {
        self.registers.write(if high { CONTROLS } else { CONTROLC }, SDA);
    }

    fn data(&mut self) -> bool {
        self.registers.read(CONTROLS) & SDA != 0
    }
}

/// The tamper loop on pin 0 of the PCA9552.
pub struct Pca9552Loop<L: Lines> {
    lines: L,
}

impl<L: Lines> Pca9552Loop<L> {
    /// The loop read through `lines`.
    pub const fn new(lines: L) -> Self {
        Self { lines }
    }
}

impl<L: Lines> TamperLoop for Pca9552Loop<L> {
    fn state(&mut self) -> TamperState {
        match read_register(&mut self.lines, PCA9552_ADDRESS, INPUT0) {
            None => TamperState::NotFitted,
            Some(levels) if levels & 1 == 0 => TamperState::Closed,
            Some(_) => TamperState::Open,
        }
    }
}
