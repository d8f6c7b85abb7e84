//! `homemx-sim`: one run of the homemx services on the host, with simulated parts and
//! scripted peers, from one seed (`cargo xtask simulate` runs many). The run provisions the
//! device over its console (with the smarthost's password and CA), lets WAN senders hand the
//! MX messages and LAN clients submit outbound ones while the network drops, duplicates,
//! reorders and corrupts frames, the mailbox host and the smarthost refuse and drop deliveries
//! and the clock jumps, then checks the invariants (`invariants.rs`, `wiretap.rs`). It prints one line of
//! figures and, when an invariant fails, the command that replays the seed.
//!
//! Usage: `homemx-sim --seed N [--messages K]`; exit status 0 when every invariant held.
//!
//! Owns: the command line and the re-execution after a power cut. Calls: `scenario`.

mod backup_mx_peer;
mod busy;
mod console;
mod dns_peer;
mod invariants;
mod peers;
mod scenario;
mod smarthost;
mod sntp_peer;
mod tls_peer;
mod watchdog;
mod wiretap;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use scenario::{Ending, Resume};

const USAGE: &str = "usage: homemx-sim --seed N [--messages K]";

fn main() -> ExitCode {
    let mut seed = None;
    let mut messages = 12;
    let mut resume_file = None;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let value = arguments.next();
        let number = value.as_deref().and_then(|value| value.parse::<u64>().ok());
        match (argument.as_str(), number) {
            ("--seed", Some(value)) => seed = Some(value),
            ("--messages", Some(value)) => messages = value as usize,
            ("--resume", _) if value.is_some() => resume_file = value.map(PathBuf::from),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(seed) = seed else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let resume = match resume_file.as_deref().map(read_resume).transpose() {
        Ok(resume) => resume,
        Err(error) => {
            eprintln!("cannot read the resume file: {error}");
            return ExitCode::from(2);
        }
    };
    let report = match scenario::run(seed, messages, resume) {
        Ending::Report(report) => report,
        Ending::PowerCut(resume) => return boot_again(seed, messages, &resume),
    };
    println!("{}", report.summary(homemx_bsp_sim::logging::log_frames()));
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

/// Reads a resume file and the flash image beside it.
fn read_resume(path: &Path) -> std::io::Result<Resume> {
    let mut resume: Resume = serde_json::from_slice(&std::fs::read(path)?)?;
    resume.flash_image = std::fs::read(path.with_extension("flash"))?;
    std::fs::remove_file(path.with_extension("flash"))?;
    std::fs::remove_file(path)?;
    Ok(resume)
}

/// After a power cut: the services' statics (task pools, cells) cannot start again in this
/// process, so the process replaces itself with a fresh one that boots the device from the
/// flash image and takes over the peers' records (two files in the system's temporary
/// directory, which the next boot removes once read).
fn boot_again(seed: u64, messages: usize, resume: &Resume) -> ExitCode {
    let path = std::env::temp_dir().join(format!("homemx-sim-{}-seed-{seed}-boot-{}.json", std::process::id(), resume.records.boot));
    let written = serde_json::to_vec(resume)
        .map_err(std::io::Error::other)
        .and_then(|json| std::fs::write(&path, json))
        .and_then(|()| std::fs::write(path.with_extension("flash"), &resume.flash_image));
    if let Err(error) = written {
        eprintln!("cannot write the resume file {}: {error}", path.display());
        return ExitCode::FAILURE;
    }
    let Ok(program) = std::env::current_exe() else { return ExitCode::FAILURE };
    let error = std::process::Command::new(program)
        .args(["--seed", &seed.to_string(), "--messages", &messages.to_string(), "--resume"])
        .arg(&path)
        .exec();
    eprintln!("cannot boot again: {error}");
    ExitCode::FAILURE
}
