//! `cargo xtask simulate`: runs the deterministic simulator (`homemx-sim`, the services on the
//! host with simulated flash, network, clock and peers) over many seeds, two at a time, and
//! adds up what the runs injected and found. A failing seed prints its violations and the one
//! command that replays it; the command fails if any seed did.
//!
//! `--seeds N` runs seeds `--first` .. `--first + N`; `--seconds T` stops starting new seeds
//! after T seconds (CI runs as many as fit its budget).
//!
//! Owns: nothing. Calls: nothing.

use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use homemx_qemu::{repository_root, Result};

const USAGE: &str = "usage: cargo xtask simulate [--seeds N] [--first S] [--seconds T]";

/// The options.
struct Options {
    seeds: u64,
    first: u64,
    seconds: Option<u64>,
}

fn options(arguments: &[String]) -> Result<Options> {
    let mut options = Options { seeds: 100, first: 1, seconds: None };
    let mut arguments = arguments.iter();
    while let Some(flag) = arguments.next() {
        let value: u64 = arguments.next().ok_or(USAGE)?.parse().map_err(|_| USAGE)?;
        match flag.as_str() {
            "--seeds" => options.seeds = value,
            "--first" => options.first = value,
            "--seconds" => options.seconds = Some(value),
            _ => return Err(USAGE.into()),
        }
    }
    Ok(options)
}

/// The `figures:` line's value of `key`.
fn figure(output: &str, key: &str) -> u64 {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("figures: "))
        .flat_map(|line| line.split(' '))
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or(0)
}

/// Wall time a seed may take (one takes a few seconds; `homemx-sim`'s own watchdog ends a run
/// whose task never returns from a poll after 30 s): past it the run is killed and fails.
const SEED_LIMIT: Duration = Duration::from_secs(120);

/// Runs one seed, killed (by its PID) if it takes longer than [`SEED_LIMIT`].
fn run_with_limit(binary: &std::path::Path, seed: u64) -> std::io::Result<std::process::Output> {
    let mut child = Command::new(binary)
        .args(["--seed", &seed.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let started = Instant::now();
    // Read the pipes on their own threads so that a chatty run cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut bytes);
        bytes
    });
    let (status, killed) = loop {
        if let Some(status) = child.try_wait()? {
            break (status, false);
        }
        if started.elapsed() > SEED_LIMIT {
            child.kill()?;
            break (child.wait()?, true);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = out.join().unwrap_or_default();
    if killed {
        stdout.extend_from_slice(format!("seed {seed}: killed after {} s of wall time\n", SEED_LIMIT.as_secs()).as_bytes());
    }
    Ok(std::process::Output { status, stdout, stderr: err.join().unwrap_or_default() })
}

/// `cargo xtask simulate`.
pub fn simulate(arguments: &[String]) -> Result<()> {
    let options = options(arguments)?;
    let root = repository_root();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["build", "-q", "-p", "homemx-sim"])
        .status()?;
    if !status.success() {
        return Err("building homemx-sim failed".into());
    }
    let binary = root.join("target/debug/homemx-sim");
    let started = Instant::now();
    let budget = options.seconds.map(Duration::from_secs);
    let next = AtomicU64::new(options.first);
    let end = options.first + options.seeds;
    let (runs, faults, messages, accepted) = (AtomicUsize::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |count| count.get()).min(4);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if budget.is_some_and(|budget| started.elapsed() >= budget) {
                    return;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    return;
                }
                let output = match run_with_limit(&binary, seed) {
                    Ok(output) => output,
                    Err(error) => {
                        failures.lock().unwrap().push(format!("seed {seed}: could not start homemx-sim: {error}"));
                        continue;
                    }
                };
                let stdout = String::from_utf8_lossy(&output.stdout);
                runs.fetch_add(1, Ordering::Relaxed);
                faults.fetch_add(figure(&stdout, "faults"), Ordering::Relaxed);
                messages.fetch_add(figure(&stdout, "messages"), Ordering::Relaxed);
                accepted.fetch_add(figure(&stdout, "accepted"), Ordering::Relaxed);
                if !output.status.success() {
                    let stderr = String::from_utf8_lossy(&output.stderr);
                    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
                    let mut report = format!("seed {seed} failed ({}):\n{stdout}", output.status);
                    if !tail.is_empty() {
                        report += &format!("  stderr (last lines): {}\n", tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
                    }
                    report += &format!("  replay: cargo run -p homemx-sim -- --seed {seed}\n");
                    eprint!("{report}");
                    failures.lock().unwrap().push(report);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "simulated {} seeds from {} in {:.0} s: {} faults injected (network, mailbox host, smarthost, backup MX, clock jumps, power cuts), {} messages offered, {} answered 250; {} failed",
        runs.load(Ordering::Relaxed),
        options.first,
        started.elapsed().as_secs_f64(),
        faults.load(Ordering::Relaxed),
        messages.load(Ordering::Relaxed),
        accepted.load(Ordering::Relaxed),
        failures.len()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of the simulated seeds failed", failures.len()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_line_is_read() {
        let output = "seed 3: ... ok\nfigures: faults=31 messages=12 accepted=11\n";
        assert_eq!((figure(output, "faults"), figure(output, "messages"), figure(output, "accepted")), (31, 12, 11));
        assert_eq!(figure("no figures", "faults"), 0);
    }
}
