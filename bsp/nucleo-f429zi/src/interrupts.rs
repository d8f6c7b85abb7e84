//! The interrupt vectors this board uses and the embassy-stm32 handlers bound to them.

use embassy_stm32::{bind_interrupts, eth, flash, peripherals, rng, usb};

bind_interrupts!(
    /// Binds the Ethernet DMA, USB OTG FS, RNG and flash interrupts to their embassy-stm32
    /// handlers. The embassy-time driver's timer interrupt (TIM8_BRK_TIM12) is bound by
    /// embassy-stm32 itself (`time-driver-any`).
    pub struct Interrupts {
        ETH => eth::InterruptHandler;
        OTG_FS => usb::InterruptHandler<peripherals::USB_OTG_FS>;
        HASH_RNG => rng::InterruptHandler<peripherals::RNG>;
        FLASH => flash::InterruptHandler;
    }
);
