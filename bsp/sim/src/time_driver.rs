//! The embassy-time driver of the simulation: a clock that only moves when the simulator
//! moves it, and embassy's timer queue.
//!
//! Time is a count of 1 kHz ticks (embassy-time's `tick-hz-1_000`, as on every board). It
//! starts at 0 and changes only through [`advance_to`], [`advance_to_next_alarm`] and
//! [`jump`]; polling tasks takes no simulated time. Each of them wakes the tasks whose timers
//! are due at the new time. The executor loop's `crate::executor::advance` walks a stretch of
//! time from alarm to alarm and polls in between, so each timer fires at its own instant; a
//! [`jump`] moves the clock at once and every timer that fell due in the gap fires together,
//! as after a suspended host or a clock step. Time never goes back: embassy-time's `Instant` is
//! monotonic. (A wall-clock step backwards is the business of whatever serves the device
//! its wall time, e.g. a simulated SNTP peer.)
//!
//! The clock and queue are per thread: each simulation runs on its own thread (tests run in
//! parallel), with its own time starting at 0. A task's timer belongs to the thread whose
//! executor polls the task.
//!
//! Owns the clock and the timer queue. Calls: embassy's queue, which wakes tasks.

use core::cell::RefCell;
use core::task::Waker;

use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

/// The simulated core clock (that of the QEMU board, so cost figures compare).
pub const CORE_CLOCK_HZ: u32 = 25_000_000;
/// Ticks per second.
pub const TICK_HZ: u64 = 1_000;

const _: () = assert!(embassy_time_driver::TICK_HZ == TICK_HZ, "the services count in 1 kHz ticks (tick-hz-1_000)");

struct Clock {
    now: u64,
    /// The earliest expiry in `queue` (`u64::MAX`: none).
    next_alarm: u64,
    queue: Queue,
}

impl Clock {
    /// Wakes every timer due at `now` and remembers the next expiry.
    fn wake_due(&mut self) {
        self.next_alarm = self.queue.next_expiration(self.now);
    }
}

thread_local! {
    static CLOCK: RefCell<Clock> = const { RefCell::new(Clock { now: 0, next_alarm: u64::MAX, queue: Queue::new() }) };
}

struct SimulatedTimeDriver;

embassy_time_driver::time_driver_impl!(static DRIVER: SimulatedTimeDriver = SimulatedTimeDriver);

impl Driver for SimulatedTimeDriver {
    fn now(&self) -> u64 {
        now()
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        CLOCK.with(|clock| {
            let mut clock = clock.borrow_mut();
            if clock.queue.schedule_wake(at, waker) {
                let now = clock.now;
                clock.next_alarm = clock.queue.next_expiration(now);
            }
        })
    }
}

/// Ticks since the simulation started (milliseconds).
pub fn now() -> u64 {
    CLOCK.with(|clock| clock.borrow().now)
}

/// Core clock counts since the start, derived from simulated time: the device's own work
/// takes no simulated time, so costs measured with these counts are the waits only.
pub fn core_clock_counts() -> u64 {
    now() * (CORE_CLOCK_HZ as u64 / TICK_HZ)
}

/// When the earliest pending timer expires, if any timer is pending.
pub fn next_alarm() -> Option<u64> {
    CLOCK.with(|clock| Some(clock.borrow().next_alarm).filter(|&at| at != u64::MAX))
}

/// Whether a timer is due now (its expiry is not after the current time): the executor loop
/// then wakes it without moving the clock ([`advance_to`] with the current time).
pub fn alarm_due() -> bool {
    next_alarm().is_some_and(|at| at <= now())
}

/// Moves the clock to `at` (not before the current time) and wakes every timer due then;
/// returns the new time. A target in the past leaves the clock where it is and only wakes
/// the timers due now.
pub fn advance_to(at: u64) -> u64 {
    CLOCK.with(|clock| {
        let mut clock = clock.borrow_mut();
        clock.now = clock.now.max(at);
        clock.wake_due();
        clock.now
    })
}

/// A clock jump: `ticks` forward at once, every timer that falls due in the gap woken
/// together; returns the new time. (`crate::executor::advance` instead walks the gap alarm
/// by alarm, polling in between.)
pub fn jump(ticks: u64) -> u64 {
    advance_to(now().saturating_add(ticks))
}

/// Moves the clock to the earliest pending timer (if it is in the future) and wakes the
/// timers due then; returns the new time, or `None` when no timer is pending.
pub fn advance_to_next_alarm() -> Option<u64> {
    next_alarm().map(advance_to)
}
