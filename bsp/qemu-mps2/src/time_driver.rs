//! The embassy-time driver of the QEMU board: SysTick interrupts at 1 kHz from the 25 MHz
//! core clock, a 64-bit tick count and embassy's timer queue, checked on every tick.
//!
//! With QEMU's `-icount shift=0` one SysTick count is 40 guest instructions, so
//! [`core_clock_counts`] lets the firmware measure its own cost deterministically.

use core::cell::{Cell, RefCell};
use core::task::Waker;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use critical_section::Mutex;
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

/// SysTick's clock on mps2-an386 (the core clock).
pub const CORE_CLOCK_HZ: u32 = 25_000_000;
const TICK_HZ: u32 = 1_000;
const COUNTS_PER_TICK: u32 = CORE_CLOCK_HZ / TICK_HZ;

const _: () = assert!(embassy_time_driver::TICK_HZ == TICK_HZ as u64, "enable embassy-time's tick-hz-1_000");

struct SysTickDriver {
    ticks: Mutex<Cell<u64>>,
    next_alarm: Mutex<Cell<u64>>,
    queue: Mutex<RefCell<Queue>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    ticks: Mutex::new(Cell::new(0)),
    next_alarm: Mutex::new(Cell::new(u64::MAX)),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.ticks.borrow(cs).get())
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            let mut queue = self.queue.borrow(cs).borrow_mut();
            if queue.schedule_wake(at, waker) {
                let now = self.ticks.borrow(cs).get();
                self.next_alarm.borrow(cs).set(queue.next_expiration(now));
            }
        })
    }
}

impl SysTickDriver {
    fn on_tick(&self) {
        critical_section::with(|cs| {
            let ticks = self.ticks.borrow(cs);
            let now = ticks.get() + 1;
            ticks.set(now);
            let next_alarm = self.next_alarm.borrow(cs);
            if now >= next_alarm.get() {
                let mut queue = self.queue.borrow(cs).borrow_mut();
                next_alarm.set(queue.next_expiration(now));
            }
        })
    }
}

/// Starts SysTick at 1 kHz. Called once by `init`.
pub(crate) fn start(syst: &mut SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(COUNTS_PER_TICK - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Milliseconds since boot.
pub fn ticks() -> u64 {
    DRIVER.now()
}

/// Core clock counts (25 MHz) since the time driver started; 40 guest instructions each
/// under `-icount shift=0`.
pub fn core_clock_counts() -> u64 {
    critical_section::with(|cs| {
        // SAFETY: reading SysTick's current value register has no side effect.
        let current = unsafe { (*SYST::PTR).cvr.read() } & 0x00ff_ffff;
        let ticks = DRIVER.ticks.borrow(cs).get();
        let pending = cortex_m::peripheral::SCB::is_pendst_pending();
        let elapsed = (COUNTS_PER_TICK - 1 - current) as u64;
        let ticks = if pending { ticks + 1 } else { ticks };
        ticks * COUNTS_PER_TICK as u64 + elapsed
    })
}

#[cortex_m_rt::exception]
fn SysTick() {
    DRIVER.on_tick();
}
