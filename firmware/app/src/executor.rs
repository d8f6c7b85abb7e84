//! The one executor that runs every task: embassy's raw executor in thread mode, asleep in WFI
//! whenever no task is ready.
//!
//! embassy's Cortex-M thread executor sleeps with WFE, which QEMU's TCG treats as a yield: an
//! idle appliance spun one host core at 100 % and reported 44 % of its time busy. WFI halts
//! until an interrupt, in QEMU and on silicon. The pender only records that a task was woken;
//! the check and the WFI run with interrupts masked, so a wake-up from an interrupt handler
//! between the check and the WFI leaves that interrupt pending and WFI returns at once.
//!
//! Owns the executor and the pend flag; called once by `main`.
//!
//! Owns: the executor and the pend flag. Calls: nothing.

use core::sync::atomic::{AtomicBool, Ordering};

use embassy_executor::{raw, Spawner};
use static_cell::StaticCell;

/// Set when a task was woken and the executor must poll again before sleeping.
static PENDED: AtomicBool = AtomicBool::new(false);

#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    PENDED.store(true, Ordering::Release);
}

/// Starts the executor with `init` spawning the first tasks; never returns.
pub fn run(init: impl FnOnce(Spawner)) -> ! {
    static EXECUTOR: StaticCell<raw::Executor> = StaticCell::new();
    let executor: &'static raw::Executor = EXECUTOR.init(raw::Executor::new(core::ptr::null_mut()));
    init(executor.spawner());
    loop {
        // SAFETY: `poll` is only ever called here, never reentrantly, from thread mode.
        unsafe { executor.poll() };
        cortex_m::interrupt::disable();
        if !PENDED.swap(false, Ordering::AcqRel) {
            cortex_m::asm::wfi();
        }
        // SAFETY: interrupts were enabled before (the firmware never runs with them masked).
        unsafe { cortex_m::interrupt::enable() };
    }
}
