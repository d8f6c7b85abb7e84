//! The clock tree of the STM32H573I-DK: 250 MHz core from the internal 64 MHz HSI, 48 MHz for USB
//! and the RNG from the HSI48 (trimmed by the CRS against the host's USB start-of-frame), and an
//! APB1 divider chosen so the embassy-time driver's timer fits a 1 kHz tick.
//!
//! The PLL runs from the HSI rather than the kit's HSE crystal so that the tree depends on
//! nothing but the chip; the Ethernet is clocked by the PHY's 50 MHz RMII reference clock, and
//! USB by the CRS-trimmed HSI48, so no part of the appliance needs the crystal's accuracy.

use embassy_stm32::rcc::mux::{Rngsel, Usbsel};
use embassy_stm32::rcc::{
    AHBPrescaler, APBPrescaler, HSIPrescaler, Hsi48Config, Pll, PllDiv, PllMul, PllPreDiv, PllSource, Sysclk, VoltageScale,
};

/// The HSI's frequency with its divider at 1.
pub const INTERNAL_CLOCK_HZ: u32 = 64_000_000;
/// PLL1 input: 64 MHz / 16 = 4 MHz (the PLL's 2–4 MHz input range).
pub const PLL_INPUT_HZ: u32 = INTERNAL_CLOCK_HZ / 16;
/// Core and AHB clock: 4 MHz × 125 / 2 (the VCO runs at 500 MHz), the chip's maximum at VOS0.
pub const SYSTEM_CLOCK_HZ: u32 = PLL_INPUT_HZ * 125 / 2;
const _: () = assert!(SYSTEM_CLOCK_HZ == 250_000_000);
/// APB1 divider. Timers on APB1 run at twice the bus clock when the divider is above 1.
pub const PERIPHERAL_BUS_1_DIVIDER: u32 = 8;
const _: () = assert!(matches!(PERIPHERAL_BUS_1_DIVIDER, 2 | 4 | 8 | 16), "APB1 divider must be 2, 4, 8 or 16 (the timer clock formula assumes above 1)");
/// Clock of the APB1 timers, one of which (TIM2, feature `time-driver-tim2`) is embassy-time's
/// driver: 2 × 250 MHz / 8 = 62.5 MHz.
pub const PERIPHERAL_BUS_1_TIMER_CLOCK_HZ: u32 = 2 * SYSTEM_CLOCK_HZ / PERIPHERAL_BUS_1_DIVIDER;

// embassy-stm32's time driver divides the timer clock by a 16-bit prescaler down to
// embassy-time's tick rate (the firmware selects `tick-hz-1_000`) and panics at boot if the
// quotient does not fit. At APB1 /1, /2 or /4 the timer clock is 250 or 125 MHz and does not
// fit; at /8 it is 62.5 MHz and 62 500 does. Checked here, at compile time.
const _: () = {
    let prescaler = PERIPHERAL_BUS_1_TIMER_CLOCK_HZ as u64 / embassy_time_driver::TICK_HZ;
    assert!(prescaler >= 1 && prescaler <= 65_536, "APB1 timer clock does not fit the embassy-time tick rate");
    assert!(
        (PERIPHERAL_BUS_1_TIMER_CLOCK_HZ as u64).is_multiple_of(embassy_time_driver::TICK_HZ),
        "embassy-time ticks would drift: the APB1 timer clock is not a multiple of the tick rate"
    );
};

/// The embassy-stm32 configuration that produces the clocks above.
pub fn configuration() -> embassy_stm32::Config {
    let mut config = embassy_stm32::Config::default();
    config.rcc.hsi = Some(HSIPrescaler::DIV1);
    config.rcc.hse = None;
    // USB device FS needs 48 MHz within 0.25 %: the CRS trims the HSI48 to the host's frames.
    config.rcc.hsi48 = Some(Hsi48Config { sync_from_usb: true });
    config.rcc.pll1 = Some(Pll {
        source: PllSource::HSI,
        prediv: PllPreDiv::DIV16,
        mul: PllMul::MUL125,
        divp: Some(PllDiv::DIV2),
        divq: None,
        divr: None,
    });
    config.rcc.sys = Sysclk::PLL1_P;
    config.rcc.voltage_scale = VoltageScale::Scale0;
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = match PERIPHERAL_BUS_1_DIVIDER {
        2 => APBPrescaler::DIV2,
        4 => APBPrescaler::DIV4,
        8 => APBPrescaler::DIV8,
        16 => APBPrescaler::DIV16,
        _ => unreachable!(),
    };
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.apb3_pre = APBPrescaler::DIV2;
    config.rcc.mux.usbsel = Usbsel::HSI48;
    config.rcc.mux.rngsel = Rngsel::HSI48;
    config
}
