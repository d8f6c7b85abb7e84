//! A 64-bit count of core clock cycles since start-up, from SysTick (which embassy-stm32 leaves
//! unused: its time driver is TIM2). The firmware times its own busy stretches with it.
//!
//! SysTick counts the 250 MHz processor clock down from 2^24 − 1 and interrupts at every wrap
//! (about every 67.1 ms); the interrupt adds one to a wrap counter. SysTick keeps running in
//! the executor's sleep (WFI), so the count is wall-clock time in core clock units, like the
//! QEMU board's.

use core::cell::Cell;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;

use crate::clocks::SYSTEM_CLOCK_HZ;

/// Frequency of the counts [`core_clock_counts`] returns (the processor clock).
pub const CORE_CLOCK_HZ: u32 = SYSTEM_CLOCK_HZ;
/// SysTick's reload value: the largest its 24-bit counter holds.
const RELOAD: u32 = 0x00FF_FFFF;
/// Counts per SysTick wrap.
const COUNTS_PER_WRAP: u64 = RELOAD as u64 + 1;

/// SysTick wraps since [`start`].
static WRAPS: Mutex<CriticalSectionRawMutex, Cell<u64>> = Mutex::new(Cell::new(0));

/// Starts SysTick on the processor clock with its interrupt. Called once by [`crate::init`].
pub(crate) fn start(system_timer: &mut SYST) {
    system_timer.disable_counter();
    system_timer.set_clock_source(SystClkSource::Core);
    system_timer.set_reload(RELOAD);
    system_timer.clear_current();
    system_timer.enable_interrupt();
    system_timer.enable_counter();
}

/// Core clock cycles (250 MHz) since the board started SysTick in `init`; 0 before.
pub fn core_clock_counts() -> u64 {
    // The whole read runs in one critical section, so the SysTick interrupt cannot count a
    // wrap half-way through it.
    WRAPS.lock(|wraps| {
        // SAFETY: reading SysTick's control register has no side effect (its COUNTFLAG is
        // cleared by the read, and nothing here uses it).
        let counter_enabled = unsafe { (*SYST::PTR).csr.read() } & 1 != 0;
        if !counter_enabled {
            return 0;
        }
        let wraps = wraps.get();
        // SAFETY: reading SysTick's current value register has no side effect.
        let before = unsafe { (*SYST::PTR).cvr.read() } & RELOAD;
        let wrap_pending = SCB::is_pendst_pending();
        // SAFETY: as above.
        let after = unsafe { (*SYST::PTR).cvr.read() } & RELOAD;
        // A wrap whose interrupt is held off by this critical section: it happened before
        // `after` was read, so `after` belongs to the next period. Otherwise `before` belongs
        // to the current one (a wrap right after the pending check is not counted yet).
        let (wraps, current) = if wrap_pending { (wraps + 1, after) } else { (wraps, before) };
        wraps * COUNTS_PER_WRAP + u64::from(RELOAD - current)
    })
}

#[cortex_m_rt::exception]
fn SysTick() {
    WRAPS.lock(|wraps| wraps.set(wraps.get() + 1));
}
