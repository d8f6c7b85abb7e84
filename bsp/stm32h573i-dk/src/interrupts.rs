//! The interrupt vectors this board uses and the embassy-stm32 handlers bound to them.

use embassy_stm32::{bind_interrupts, eth, peripherals, rng, usb};

bind_interrupts!(
    /// Binds the Ethernet DMA, USB device FS and RNG interrupts to their embassy-stm32 handlers.
    /// The embassy-time driver's timer interrupt (TIM2) is bound by embassy-stm32 itself
    /// (`time-driver-tim2`); the flash driver of the H5 family is blocking and needs none.
    pub struct Interrupts {
        ETH => eth::InterruptHandler;
        USB_DRD_FS => usb::InterruptHandler<peripherals::USB>;
        RNG => rng::InterruptHandler<peripherals::RNG>;
    }
);
