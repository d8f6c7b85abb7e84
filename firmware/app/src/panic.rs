//! What happens on a panic: log it, then reset. The reset handler zeroes all RAM, so no key
//! material survives (the key store's own zeroize runs before that once it exists).
//!
//! Owns: the panic handler. Calls: nothing.

use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    defmt::error!("panic: {}", defmt::Display2Format(info));
    cortex_m::peripheral::SCB::sys_reset()
}
