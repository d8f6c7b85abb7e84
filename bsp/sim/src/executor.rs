//! The simulation's executors and the loop that drives them and the clock, one step at a time.
//!
//! A [`SimExecutor`] is embassy's raw executor with a pender that only sets the executor's
//! own flag (the firmware's `firmware/app/src/executor.rs` does the same and sleeps in WFI;
//! here the loop decides what happens next). Tasks are spawned from any `'static` future
//! into storage leaked for the rest of the process ([`SimExecutor::spawn`]), or through
//! [`SimExecutor::spawner`] with embassy's task macro. Several executors can run side by
//! side, e.g. one for the device (so a reset can abandon it whole) and one for the simulated
//! peers, which live on across the device's reboots.
//!
//! The loop is deterministic: a [`step`] polls every pended executor once in the order
//! given, or, when none is pended, moves the clock to the next timer (never past a deadline).
//! [`run_until_quiescent`] polls without moving the clock; [`run`] steps with a hook between
//! steps, where the simulator injects events (frames, power cuts, console input) and decides
//! when to stop; [`advance`] walks a stretch of simulated time alarm by alarm. Every loop has
//! a bound on its steps. A poll that ends in [`crate::reset::DeviceReset`] (the device called
//! `ResetControl::reset`) halts that executor for good and is reported, not propagated; any
//! other panic propagates.
//!
//! Polling costs time, as on a device: after [`POLLS_PER_TICK`] polling steps in a row the
//! clock moves on by one tick. Without that, a task that asks to be polled again at once
//! (embassy-net's runner while smoltcp waits to repeat an ARP request, "poll again at *now*")
//! would hold the clock still for ever, a livelock no device has: its polls take time.
//!
//! This is the simulator's machinery rather than the board's; it lives here for now because
//! it is tied to this crate's time driver and pender (one of each per process).
//!
//! Owns the executors' pend flags. Calls: embassy's executor (which polls the tasks), the
//! time driver.

use core::cell::Cell;
use core::future::Future;
use core::ops::ControlFlow;
use core::sync::atomic::{AtomicBool, Ordering};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use embassy_executor::{raw, Spawner};

use crate::reset::DeviceReset;
use crate::time_driver;

/// Called by embassy when a task of the executor whose context is `context` is woken.
#[unsafe(export_name = "__pender")]
fn pender(context: *mut ()) {
    // SAFETY: every executor in a process that links this crate is a `SimExecutor`, whose
    // context is its leaked (never freed) pend flag.
    if let Some(pended) = unsafe { (context as *const AtomicBool).as_ref() } {
        pended.store(true, Ordering::Release);
    }
}

struct ExecutorState {
    executor: raw::Executor,
    pended: &'static AtomicBool,
    polling: Cell<bool>,
    halted: Cell<bool>,
}

/// One executor of the simulation (a copyable handle; the executor itself lives forever).
#[derive(Clone, Copy)]
pub struct SimExecutor {
    state: &'static ExecutorState,
}

/// What polling an executor did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollOutcome {
    /// No task was woken: nothing was polled.
    Idle,
    /// The woken tasks were polled.
    Polled,
    /// A task reset the device: the executor is halted and is never polled again.
    Reset(DeviceReset),
    /// The executor was halted before (by a reset or [`SimExecutor::halt`]).
    Halted,
}

impl SimExecutor {
    /// A new executor; its memory is leaked (tasks must outlive everything, as on a device).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let pended: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let context = pended as *const AtomicBool as *mut ();
        let state = Box::leak(Box::new(ExecutorState {
            executor: raw::Executor::new(context),
            pended,
            polling: Cell::new(false),
            halted: Cell::new(false),
        }));
        Self { state }
    }

    /// A spawner for embassy's `#[task]` functions.
    pub fn spawner(self) -> Spawner {
        self.state.executor.spawner()
    }

    /// Spawns `future` as a task, in storage leaked for the rest of the process.
    pub fn spawn<F: Future + 'static>(self, future: F) {
        let storage: &'static raw::TaskStorage<F> = Box::leak(Box::new(raw::TaskStorage::new()));
        let token = storage.spawn(move || future).expect("fresh task storage is free");
        self.spawner().spawn(token);
    }

    /// Whether a task was woken since the last poll.
    pub fn is_pended(self) -> bool {
        !self.state.halted.get() && self.state.pended.load(Ordering::Acquire)
    }

    /// Whether the executor is halted (a reset, or [`SimExecutor::halt`]).
    pub fn is_halted(self) -> bool {
        self.state.halted.get()
    }

    /// Stops the executor for good: its tasks are never polled again (a power cut). Wakes of
    /// its tasks (their timers, their peers' frames) are then ignored.
    pub fn halt(self) {
        self.state.halted.set(true);
    }

    /// Polls the woken tasks once, if any. Panics when called from one of this executor's
    /// own tasks.
    pub fn poll(self) -> PollOutcome {
        if self.state.halted.get() {
            return PollOutcome::Halted;
        }
        if !self.state.pended.swap(false, Ordering::AcqRel) {
            return PollOutcome::Idle;
        }
        assert!(!self.state.polling.replace(true), "SimExecutor::poll called from inside its own poll");
        // SAFETY: not reentrant (checked above), and only ever on the thread that made it
        // (`SimExecutor` is neither Send nor Sync).
        let result = catch_unwind(AssertUnwindSafe(|| unsafe { self.state.executor.poll() }));
        self.state.polling.set(false);
        match result {
            Ok(()) => PollOutcome::Polled,
            Err(payload) => match payload.downcast_ref::<DeviceReset>() {
                Some(&reset) => {
                    self.halt();
                    PollOutcome::Reset(reset)
                }
                None => resume_unwind(payload),
            },
        }
    }
}

/// Polling steps in a row that cost one tick (1 ms) of simulated time: a poll of the device's
/// executor takes tens of microseconds on its Cortex-M.
pub const POLLS_PER_TICK: u32 = 20;

thread_local! {
    /// Polling steps since the clock last moved.
    static BUSY_POLLS: Cell<u32> = const { Cell::new(0) };
}

/// What one [`step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Pended executors were polled.
    Polled,
    /// Executor number `executor` (in the slice given) ended its poll in a device reset and
    /// is halted; executors after it were not polled in this step.
    Reset {
        /// The index of the executor in the slice.
        executor: usize,
        /// The reset's payload.
        reset: DeviceReset,
    },
    /// Nothing was pended: the clock moved to `now` (or stayed there) and woke the timers due.
    ClockMoved {
        /// The time after the move.
        now: u64,
    },
    /// Nothing is pended and no timer is due up to the deadline (the clock stands at the
    /// deadline if there is one): nothing more happens without an event from outside.
    Quiescent,
}

/// Why a loop stopped without its hook asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interruption {
    /// The step bound was reached.
    StepLimit,
    /// An executor ended a poll in a device reset (it is halted).
    Reset {
        /// The index of the executor in the slice.
        executor: usize,
        /// The reset's payload.
        reset: DeviceReset,
    },
}

/// One step: polls every pended executor once, in order; if none is pended, wakes the timers
/// due now, or moves the clock to the next timer, or (when the next timer lies beyond
/// `deadline`, or there is none) to `deadline`.
pub fn step(executors: &[SimExecutor], deadline: Option<u64>) -> Step {
    if executors.iter().any(|executor| executor.is_pended()) {
        for (index, executor) in executors.iter().enumerate() {
            if let PollOutcome::Reset(reset) = executor.poll() {
                return Step::Reset { executor: index, reset };
            }
        }
        let busy = BUSY_POLLS.get() + 1;
        if busy >= POLLS_PER_TICK {
            BUSY_POLLS.set(0);
            time_driver::advance_to(time_driver::now() + 1);
        } else {
            BUSY_POLLS.set(busy);
        }
        return Step::Polled;
    }
    BUSY_POLLS.set(0);
    let now = time_driver::now();
    match (time_driver::next_alarm(), deadline) {
        (Some(at), _) if at <= now => Step::ClockMoved { now: time_driver::advance_to(now) },
        (Some(at), None) => Step::ClockMoved { now: time_driver::advance_to(at) },
        (Some(at), Some(limit)) if at <= limit => Step::ClockMoved { now: time_driver::advance_to(at) },
        (_, Some(limit)) if now < limit => Step::ClockMoved { now: time_driver::advance_to(limit) },
        _ => Step::Quiescent,
    }
}

/// Polls until no executor is pended, without moving the clock; returns the polling rounds.
pub fn run_until_quiescent(executors: &[SimExecutor], max_rounds: u64) -> Result<u64, Interruption> {
    let mut rounds = 0;
    while executors.iter().any(|executor| executor.is_pended()) {
        if rounds == max_rounds {
            return Err(Interruption::StepLimit);
        }
        rounds += 1;
        for (index, executor) in executors.iter().enumerate() {
            if let PollOutcome::Reset(reset) = executor.poll() {
                return Err(Interruption::Reset { executor: index, reset });
            }
        }
    }
    Ok(rounds)
}

/// Bounds of a [`run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Steps at most.
    pub max_steps: u64,
    /// The clock never moves past this tick.
    pub deadline: Option<u64>,
}

/// How a [`run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome<T> {
    /// The hook stopped the run with this value.
    Stopped(T),
    /// Nothing was pended and no timer was due up to the deadline, and the hook added nothing.
    Quiescent,
    /// [`Limits::max_steps`] steps were taken.
    StepLimit,
}

/// Steps until the hook breaks, the simulation is quiescent or the step bound is reached.
///
/// After each step the hook gets what the step did and may inject events (deliver a frame,
/// cut the power, type on the console) and stop the run. A device reset does not end the
/// run: the hook sees [`Step::Reset`] and decides (typically it stops, boots the device
/// again on a fresh executor and runs on).
pub fn run<T>(executors: &[SimExecutor], limits: Limits, mut hook: impl FnMut(Step) -> ControlFlow<T>) -> RunOutcome<T> {
    for _ in 0..limits.max_steps {
        let step = step(executors, limits.deadline);
        if let ControlFlow::Break(value) = hook(step) {
            return RunOutcome::Stopped(value);
        }
        if step == Step::Quiescent && !executors.iter().any(|executor| executor.is_pended()) && !time_driver::alarm_due() {
            return RunOutcome::Quiescent;
        }
    }
    RunOutcome::StepLimit
}

/// Lets `ticks` of simulated time pass: steps alarm by alarm, polling in between, until the
/// clock stands `ticks` later and nothing is pended.
pub fn advance(executors: &[SimExecutor], ticks: u64, max_steps: u64) -> Result<(), Interruption> {
    let deadline = time_driver::now().saturating_add(ticks);
    let limits = Limits { max_steps, deadline: Some(deadline) };
    match run(executors, limits, |step| match step {
        Step::Reset { executor, reset } => ControlFlow::Break(Interruption::Reset { executor, reset }),
        _ => ControlFlow::Continue(()),
    }) {
        RunOutcome::Stopped(interruption) => Err(interruption),
        RunOutcome::Quiescent => Ok(()),
        RunOutcome::StepLimit => Err(Interruption::StepLimit),
    }
}
