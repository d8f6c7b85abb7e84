//! `homemx-sim`: one run of the homemx services on the host, with simulated parts and
//! scripted peers, from one seed (`cargo xtask simulate` runs many). The run provisions the
//! device over its console, lets WAN senders hand the MX messages while the network drops,
//! duplicates, reorders and corrupts frames, the mailbox host refuses and drops deliveries and
//! the clock jumps, then checks the invariants (`invariants.rs`). It prints one line of
//! figures and, when an invariant fails, the command that replays the seed.
//!
//! Usage: `homemx-sim --seed N [--messages K]`; exit status 0 when every invariant held.
//!
//! Owns: the process's defmt logger (the services' log frames are counted, not decoded). Calls:
//! `scenario`.

mod console;
mod invariants;
mod peers;
mod scenario;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

/// Log frames the services wrote (defmt's encoded frames cannot be decoded on the host: the
/// strings' indices come from the firmware's linker script).
static LOG_FRAMES: AtomicU64 = AtomicU64::new(0);

#[defmt::global_logger]
struct CountingLogger;

// SAFETY: the logger keeps no state but an atomic counter; one thread runs the services.
unsafe impl defmt::Logger for CountingLogger {
    fn acquire() {
        LOG_FRAMES.fetch_add(1, Ordering::Relaxed);
    }
    unsafe fn flush() {}
    unsafe fn release() {}
    unsafe fn write(_bytes: &[u8]) {}
}

defmt::timestamp!("{=u64:ms}", homemx_bsp_sim::time_driver::now());

/// A `defmt::panic!` (embassy-net's `unreachable!`s) as a Rust panic: the run fails with it.
#[defmt::panic_handler]
fn defmt_panic() -> ! {
    panic!("defmt panic in the services or embassy")
}

fn main() -> ExitCode {
    let mut seed = None;
    let mut messages = 12;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let value = arguments.next().and_then(|value| value.parse::<u64>().ok());
        match (argument.as_str(), value) {
            ("--seed", Some(value)) => seed = Some(value),
            ("--messages", Some(value)) => messages = value as usize,
            _ => {
                eprintln!("usage: homemx-sim --seed N [--messages K]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(seed) = seed else {
        eprintln!("usage: homemx-sim --seed N [--messages K]");
        return ExitCode::from(2);
    };
    let report = scenario::run(seed, messages);
    println!("{}", report.summary(LOG_FRAMES.load(Ordering::Relaxed)));
    // For `cargo xtask simulate`, which adds up the runs.
    println!("figures: faults={} messages={} accepted={}", report.faults(), report.offered, report.accepted);
    if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        for violation in &report.violations {
            println!("seed {seed}: {violation}");
        }
        println!("replay: cargo run -p homemx-sim -- --seed {seed} --messages {messages}");
        ExitCode::FAILURE
    }
}
