//! The tamper loop of the STM32H573I-DK: the TAMP peripheral's external tamper input 1,
//! `TAMP_IN1` on pin **PC13**, in passive level mode with its filter and pull-up precharge.
//!
//! Wiring (README, board section): a normally-closed loop (door contact, the NC contact of a
//! motion detector's alarm relay, a case switch) between PC13 and GND. Closed, the pin is held
//! low; opened, the precharge pulls it high and the filter sees a high level on two samples in a
//! row: a tamper event. PC13 is the pin ST's H5 examples use for `TAMP_IN1` (on ST's boards it
//! is also the USER push-button's pin; check the kit's schematic, UM3143, before wiring, and
//! leave the button alone once the loop is fitted). **Not run on hardware here**: this module is
//! built in CI (`cargo xtask build --board stm32h573i-dk`), never exercised.
//!
//! embassy-stm32 0.6 has no TAMP driver, so the registers are programmed through its PAC
//! (stm32-metapac, `tamp_h5`), following RM0481's TAMP chapter:
//!
//! - `TAMP_FLTCR`: `TAMPFLT = 01` (level detection, two consecutive samples), `TAMPFREQ = 111`
//!   (sample at RTCCLK / 256: 125 Hz from the 32 kHz LSI that embassy-stm32 selects for the RTC
//!   by default), `TAMPPRCH = 01` (precharge two RTCCLK cycles), `TAMPPUDIS = 0` (pull-up
//!   precharge on: the loop needs no resistor of its own).
//! - `TAMP_CR2`: `TAMP1TRG = 1` (the high level, loop open, is the event); `TAMP1POM = 1`
//!   (potential mode: the hardware does **not** erase the backup registers and device secrets;
//!   this firmware keeps no secret there, and the software lock that follows wipes the keys in
//!   RAM; a hardware erase of SRAM2 under the running firmware would stop it before the event
//!   is persisted); `TAMP1MSK = 0` (the flag latches, so a short opening is not missed between
//!   two polls).
//! - `TAMP_CR1`: `TAMP1E = 1`.
//! - `TAMP_IER`: left off. The application polls [`TamperInput::state`] a few times a second
//!   (as on QEMU): `TAMP_SR.TAMP1F` latched means the loop was open since the last read; it is
//!   cleared through `TAMP_SCR.CTAMP1F` and, while the loop stays open, set again by the next
//!   samples. The `TAMP` interrupt would only shorten the reaction from ~150 ms; not used.
//!
//! A loop that is not wired reads open: this board always has its tamper input, so the kit
//! needs the loop (or a wire from PC13 to GND) to unlock.
//!
//! Owns: the TAMP peripheral and PC13. Calls: nothing.

use embassy_stm32::pac;
use homemx_board::{TamperLoop, TamperState};

/// External tamper input 1 (index 0 in the PAC's per-input fields).
const INPUT: usize = 0;

/// The TAMP_IN1 loop.
pub struct TamperInput {
    _pin: embassy_stm32::Peri<'static, embassy_stm32::peripherals::PC13>,
}

impl TamperInput {
    /// Clocks the TAMP registers and arms `TAMP_IN1` (see the module documentation).
    pub fn new(pin: embassy_stm32::Peri<'static, embassy_stm32::peripherals::PC13>) -> Self {
        pac::RCC.apb3enr().modify(|register| register.set_rtcapben(true));
        let tamp = pac::TAMP;
        tamp.cr1().modify(|register| register.set_tampe(INPUT, false));
        tamp.fltcr().write(|register| {
            register.set_tampflt(0b01);
            register.set_tampfreq(0b111);
            register.set_tampprch(0b01);
            register.set_tamppudis(false);
        });
        tamp.cr2().modify(|register| {
            register.set_tamptrg(INPUT, true);
            register.set_tamppom(INPUT, true);
            register.set_tampmsk(INPUT, false);
        });
        tamp.ier().modify(|register| register.set_tampie(INPUT, false));
        tamp.scr().write(|register| register.set_ctampf(INPUT, true));
        tamp.cr1().modify(|register| register.set_tampe(INPUT, true));
        TamperInput { _pin: pin }
    }
}

impl TamperLoop for TamperInput {
    fn state(&mut self) -> TamperState {
        let tamp = pac::TAMP;
        if tamp.sr().read().tampf(INPUT) {
            tamp.scr().write(|register| register.set_ctampf(INPUT, true));
            TamperState::Open
        } else {
            TamperState::Closed
        }
    }
}
