//! The check that no task spins: on a device a task that wakes itself again and again (a
//! read that returns at once in a loop around an `.await`, a `yield_now` loop) never lets the
//! executor sleep, burns the CPU and delays every other task, even if mail still flows.
//!
//! The simulator's executor charges one tick (1 ms) for every [`POLLS_PER_TICK`] polling steps
//! in a row, so a device that always has a woken task when its poll ends is busy for that
//! long in simulated time. [`BusyMeter`] measures the longest such stretch after each step;
//! the run fails when it exceeds [`BUSY_LIMIT_MS`]. A device that is merely working hard
//! (frames arriving from the peers, a long message being encrypted into the spool) goes idle
//! between frames: its stretches stay in the tens of milliseconds.
//!
//! Owns: the busy stretch counters. Calls: nothing.

use homemx_bsp_sim::executor::POLLS_PER_TICK;

/// The longest the device may stay busy without a pause, in simulated milliseconds.
pub const BUSY_LIMIT_MS: u64 = 1_000;

/// The device's busy stretches.
#[derive(Default)]
pub struct BusyMeter {
    current_steps: u64,
    longest_steps: u64,
    longest_ended_at: u64,
}

impl BusyMeter {
    /// A meter that starts with the longest stretch of the boots before (a power cut ends a
    /// boot, not the run).
    pub fn after_boots(longest_ms: u64) -> Self {
        Self { longest_steps: longest_ms * u64::from(POLLS_PER_TICK), ..Self::default() }
    }

    /// After a step that polled the device's executor: `still_pended` tells whether a task of
    /// it was woken again during the poll; `now` is the simulated time.
    pub fn after_device_poll(&mut self, still_pended: bool, now: u64) {
        if still_pended {
            self.current_steps += 1;
            if self.current_steps > self.longest_steps {
                self.longest_steps = self.current_steps;
                self.longest_ended_at = now;
            }
        } else {
            self.current_steps = 0;
        }
    }

    /// After a step that did not poll the device (it slept).
    pub fn device_idle(&mut self) {
        self.current_steps = 0;
    }

    /// The longest busy stretch so far, in simulated milliseconds.
    pub fn longest_ms(&self) -> u64 {
        self.longest_steps / u64::from(POLLS_PER_TICK)
    }

    /// The violation, if the longest stretch is over the limit.
    pub fn violation(&self) -> Option<String> {
        (self.longest_ms() > BUSY_LIMIT_MS).then(|| {
            format!(
                "the device stayed busy for {} ms without a pause (until {} ms; the limit is {BUSY_LIMIT_MS} ms): a task wakes itself in a loop",
                self.longest_ms(),
                self.longest_ended_at
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_that_always_has_a_woken_task_is_reported() {
        let mut meter = BusyMeter::default();
        let steps = (BUSY_LIMIT_MS + 1) * u64::from(POLLS_PER_TICK);
        for step in 0..steps {
            meter.after_device_poll(true, step / u64::from(POLLS_PER_TICK));
        }
        assert!(meter.violation().is_some());
    }

    #[test]
    fn a_pause_ends_a_stretch() {
        let mut meter = BusyMeter::default();
        let half = BUSY_LIMIT_MS * u64::from(POLLS_PER_TICK) / 2 + 10;
        for round in 0..4 {
            for step in 0..half {
                meter.after_device_poll(true, round * half + step);
            }
            if round % 2 == 0 {
                meter.after_device_poll(false, 0);
            } else {
                meter.device_idle();
            }
        }
        assert_eq!(meter.violation(), None);
        assert_eq!(meter.longest_ms(), half / u64::from(POLLS_PER_TICK));
    }
}
