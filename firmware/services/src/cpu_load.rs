//! Busy versus asleep: embassy's executor trace hooks mark when it starts polling and when
//! it goes idle (WFI, see [`crate::executor`]); the board's core-clock counter times the stretches in between.
//!
//! Under QEMU's `-icount shift=0` one core-clock count of the QEMU board is exactly 40
//! executed instructions, so [`busy_core_clock_counts`] × 40 is the firmware's instruction
//! count (interrupt handlers that run while the executor sleeps count as idle).
//!
//! The same hooks time every single task poll: one executor runs every task, so a poll that
//! does not return (a loop that never awaits anything pending) stops the network, the console
//! and the mail for as long as it lasts. [`longest_poll_microseconds`] is the longest since boot
//! (`/health` reports it; the e2e tests hold it under 50 ms).
//!
//! Owns: the busy/idle accounting and the longest-poll timing. Calls: nothing.

use core::cell::Cell;

use critical_section::Mutex;

use crate::bsp;

struct Accounting {
    idle_since: Option<u64>,
    idle_total: u64,
}

static ACCOUNTING: Mutex<Cell<Accounting>> = Mutex::new(Cell::new(Accounting { idle_since: None, idle_total: 0 }));

/// When the task poll under way began, and the longest poll so far (core-clock counts).
struct PollTiming {
    started: u64,
    longest: u64,
}

static POLL_TIMING: Mutex<Cell<PollTiming>> = Mutex::new(Cell::new(PollTiming { started: 0, longest: 0 }));

/// A task poll this long is logged (the e2e tests allow 50 ms).
const LONG_POLL_MICROSECONDS: u64 = 20_000;

/// The longest single task poll since boot, in microseconds of the core clock.
pub fn longest_poll_microseconds() -> u64 {
    let longest = critical_section::with(|cs| {
        let timing = POLL_TIMING.borrow(cs).replace(PollTiming { started: 0, longest: 0 });
        let longest = timing.longest;
        POLL_TIMING.borrow(cs).set(timing);
        longest
    });
    longest * 1_000_000 / u64::from(bsp::CORE_CLOCK_HZ)
}

/// Core-clock counts the executor has spent running since the board started its clock.
pub fn busy_core_clock_counts() -> u64 {
    let now = bsp::core_clock_counts();
    critical_section::with(|cs| {
        let accounting = ACCOUNTING.borrow(cs).replace(Accounting { idle_since: None, idle_total: 0 });
        let idle = accounting.idle_total + accounting.idle_since.map_or(0, |since| now - since);
        ACCOUNTING.borrow(cs).set(accounting);
        now.saturating_sub(idle)
    })
}

#[no_mangle]
fn _embassy_trace_poll_start(_executor_id: u32) {
    let now = bsp::core_clock_counts();
    critical_section::with(|cs| {
        let mut accounting = ACCOUNTING.borrow(cs).replace(Accounting { idle_since: None, idle_total: 0 });
        if let Some(since) = accounting.idle_since.take() {
            accounting.idle_total += now - since;
        }
        ACCOUNTING.borrow(cs).set(accounting);
    })
}

#[no_mangle]
fn _embassy_trace_executor_idle(_executor_id: u32) {
    let now = bsp::core_clock_counts();
    critical_section::with(|cs| {
        let mut accounting = ACCOUNTING.borrow(cs).replace(Accounting { idle_since: None, idle_total: 0 });
        accounting.idle_since = Some(now);
        ACCOUNTING.borrow(cs).set(accounting);
    })
}

#[no_mangle]
fn _embassy_trace_task_new(_executor_id: u32, _task_id: u32) {}
#[no_mangle]
fn _embassy_trace_task_end(_executor_id: u32, _task_id: u32) {}
#[no_mangle]
fn _embassy_trace_task_exec_begin(_executor_id: u32, _task_id: u32) {
    let now = bsp::core_clock_counts();
    critical_section::with(|cs| {
        let timing = POLL_TIMING.borrow(cs).replace(PollTiming { started: 0, longest: 0 });
        POLL_TIMING.borrow(cs).set(PollTiming { started: now, longest: timing.longest });
    })
}
#[no_mangle]
fn _embassy_trace_task_exec_end(_executor_id: u32, _task_id: u32) {
    let now = bsp::core_clock_counts();
    let duration = critical_section::with(|cs| {
        let timing = POLL_TIMING.borrow(cs).replace(PollTiming { started: 0, longest: 0 });
        let duration = now.saturating_sub(timing.started);
        POLL_TIMING.borrow(cs).set(PollTiming { started: timing.started, longest: timing.longest.max(duration) });
        duration
    });
    let microseconds = duration * 1_000_000 / u64::from(bsp::CORE_CLOCK_HZ);
    if microseconds >= LONG_POLL_MICROSECONDS {
        // The log line before this one names what ran.
        defmt::warn!("a task poll took {=u64} µs: every other task waited", microseconds);
    }
}
#[no_mangle]
fn _embassy_trace_task_ready_begin(_executor_id: u32, _task_id: u32) {}
