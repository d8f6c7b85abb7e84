//! The mps2-an386 external interrupt lines this board uses, and their dispatch.
//!
//! Without a chip crate, cortex-m-rt routes every external interrupt to `DefaultHandler`
//! with the IRQ number; this module forwards each to its driver.

use cortex_m::peripheral::NVIC;

/// External interrupt lines of mps2-an386 that homemx drivers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Interrupt {
    /// CMSDK UART0 receive.
    Uart0Receive = 0,
    /// CMSDK UART0 transmit.
    Uart0Transmit = 1,
    /// LAN9118 Ethernet controller.
    Ethernet = 13,
}

// SAFETY: the numbers are the mps2-an386 IRQ lines (QEMU hw/arm/mps2.c).
unsafe impl cortex_m::interrupt::InterruptNumber for Interrupt {
    fn number(self) -> u16 {
        self as u16
    }
}

/// Unmasks the board's interrupt lines in the NVIC.
pub fn enable_all() {
    for line in [Interrupt::Uart0Receive, Interrupt::Uart0Transmit, Interrupt::Ethernet] {
        // SAFETY: every handler is ready: the drivers were constructed before this call.
        unsafe { NVIC::unmask(line) };
    }
}

#[cortex_m_rt::exception]
unsafe fn DefaultHandler(irq_number: i16) {
    match irq_number {
        0 | 1 => crate::uart::on_interrupt(),
        13 => crate::ethernet::on_interrupt(),
        _ => {}
    }
}
