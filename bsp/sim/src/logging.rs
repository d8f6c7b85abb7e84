//! The defmt logger of the simulated board, as every board has one (the QEMU board's writes to
//! semihosting): the services' log frames are counted, not kept. defmt's frames cannot be
//! decoded on the host (the strings' indices come from the firmware's linker script), so the
//! count is all they tell. Also defmt's timestamp (the simulated clock) and its panic handler
//! (a Rust panic: the simulation fails with it). The device's event log, which the services
//! also keep as text, is printed with the simulated time when `HOMEMX_SIM_TRACE` is set
//! ([`event`]).
//!
//! Owns the frame counter. Calls: the time driver.

use std::sync::atomic::{AtomicU64, Ordering};

/// Log frames written since the process started.
static FRAMES: AtomicU64 = AtomicU64::new(0);

/// Log frames the services (and embassy) wrote since the process started.
pub fn log_frames() -> u64 {
    FRAMES.load(Ordering::Relaxed)
}

/// One line of the device's event log (the services' `event_log` hands each to its board): on
/// standard error when `HOMEMX_SIM_TRACE` is set, else nowhere.
pub fn event(level: &str, text: &str) {
    if std::env::var_os("HOMEMX_SIM_TRACE").is_some() {
        eprintln!("{} ms: device {level}: {text}", crate::time_driver::now());
    }
}

#[defmt::global_logger]
struct CountingLogger;

// SAFETY: the logger keeps no state but an atomic counter.
unsafe impl defmt::Logger for CountingLogger {
    fn acquire() {
        FRAMES.fetch_add(1, Ordering::Relaxed);
    }
    unsafe fn flush() {}
    unsafe fn release() {}
    unsafe fn write(_bytes: &[u8]) {}
}

defmt::timestamp!("{=u64:ms}", crate::time_driver::now());

/// A `defmt::panic!` (embassy-net's `unreachable!`s) as a Rust panic.
#[defmt::panic_handler]
fn defmt_panic() -> ! {
    panic!("defmt panic in the services or embassy")
}
