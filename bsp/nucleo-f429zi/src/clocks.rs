//! The clock tree of the NUCLEO-F429ZI: 8 MHz from the ST-LINK, 168 MHz core, 48 MHz for USB
//! and the RNG, and bus dividers chosen so the embassy-time driver's timer fits a 1 kHz tick.

use embassy_stm32::rcc::mux::Clk48sel;
use embassy_stm32::rcc::{AHBPrescaler, APBPrescaler, Hse, HseMode, Pll, PllMul, PllPDiv, PllPreDiv, PllQDiv, PllSource, Sysclk};
use embassy_stm32::time::Hertz;

/// The ST-LINK's MCO output feeds the STM32's `PH0/OSC_IN` with 8 MHz (HSE in bypass mode).
pub const EXTERNAL_CLOCK_HZ: u32 = 8_000_000;
/// Core and AHB clock: 8 MHz / 4 × 168 / 2.
pub const SYSTEM_CLOCK_HZ: u32 = 168_000_000;
/// PLL "Q" output for USB OTG FS and the RNG: 8 MHz / 4 × 168 / 7 (USB needs exactly 48 MHz).
pub const USB_AND_RNG_CLOCK_HZ: u32 = 48_000_000;
/// APB1 divider. Timers on APB1 run at twice the bus clock when the divider is above 1.
pub const PERIPHERAL_BUS_1_DIVIDER: u32 = 8;
const _: () = assert!(matches!(PERIPHERAL_BUS_1_DIVIDER, 2 | 4 | 8 | 16), "APB1 divider must be 2, 4, 8 or 16 (the timer clock formula assumes above 1)");
/// APB2 divider (84 MHz bus).
pub const PERIPHERAL_BUS_2_DIVIDER: u32 = 2;
/// Clock of the APB1 timers, one of which (TIM12, picked by `time-driver-any`) is embassy-time's
/// driver: 2 × 168 MHz / 8 = 42 MHz.
pub const PERIPHERAL_BUS_1_TIMER_CLOCK_HZ: u32 = 2 * SYSTEM_CLOCK_HZ / PERIPHERAL_BUS_1_DIVIDER;

// embassy-stm32's time driver divides the timer clock by a 16-bit prescaler down to
// embassy-time's tick rate (the firmware selects `tick-hz-1_000`) and panics at boot if the
// quotient does not fit. With the usual APB1 divider of 4 the timer clock is 84 MHz and
// 84 000 does not fit; with 8 it is 42 MHz and 42 000 does. Checked here, at compile time.
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
    config.rcc.hse = Some(Hse { freq: Hertz(EXTERNAL_CLOCK_HZ), mode: HseMode::Bypass });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL168,
        divp: Some(PllPDiv::DIV2),
        divq: Some(PllQDiv::DIV7),
        divr: None,
    });
    config.rcc.sys = Sysclk::PLL1_P;
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = match PERIPHERAL_BUS_1_DIVIDER {
        2 => APBPrescaler::DIV2,
        4 => APBPrescaler::DIV4,
        8 => APBPrescaler::DIV8,
        16 => APBPrescaler::DIV16,
        _ => unreachable!(),
    };
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    // USB OTG FS and the RNG take the PLL's Q output (the F429 has no other 48 MHz source).
    config.rcc.mux.clk48sel = Clk48sel::PLL1_Q;
    config
}
