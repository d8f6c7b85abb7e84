//! The one check that needs the host's clock: a task that never returns from its poll (it
//! loops inside one poll: the simulated clock cannot move then, so no deadline of its own ends
//! it, and the executor's step limit, counted between steps, never comes). A thread of the
//! process watches the step counter; when no step ends for [`STUCK_AFTER`] of wall time (a
//! whole run takes a few seconds), it prints the violation and the replay command and ends the
//! process with a failure. Whether a poll returns does not depend on the host's speed, so the
//! verdict replays; only how soon it comes does.
//!
//! Owns: the watchdog thread and the step counter. Calls: nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Wall time without a finished step after which the run is declared stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(30);

/// The run's side of the watchdog.
pub struct Watchdog {
    steps: Arc<AtomicU64>,
}

impl Watchdog {
    /// Starts the watchdog thread for the run of `seed`.
    pub fn start(seed: u64) -> Self {
        let steps = Arc::new(AtomicU64::new(0));
        let watched = steps.clone();
        std::thread::spawn(move || {
            let mut last = u64::MAX;
            loop {
                std::thread::sleep(STUCK_AFTER);
                let now = watched.load(Ordering::Relaxed);
                if now == last {
                    println!(
                        "seed {seed}: a task did not return from its poll for {} s of wall time (step {now}): it loops inside one poll",
                        STUCK_AFTER.as_secs()
                    );
                    println!("replay: cargo run -p homemx-sim -- --seed {seed}");
                    std::process::exit(3);
                }
                last = now;
            }
        });
        Self { steps }
    }

    /// One step of the executors ended.
    pub fn step_done(&self) {
        self.steps.fetch_add(1, Ordering::Relaxed);
    }
}
