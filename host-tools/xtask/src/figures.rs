//! `cargo xtask figures`: the numbers the closing notes report, printed, never asserted.
//!
//! - flash (text + rodata + data) and static RAM (data + bss) of every image
//! - boot to `/health` answering in QEMU: wall-clock from QEMU's start, and guest time
//! - the same boot under `-icount shift=0,sleep=off`, where guest time is deterministic

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use homemx_qemu::firmware::{image_size, FirmwareBuild};
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig, NetworkMode};
use homemx_qemu::{flash_image, Result};

use crate::commands::ALL_BUILDS;

/// Under `-icount shift=0` one SysTick count (25 MHz) is 40 ns = 40 instructions.
const INSTRUCTIONS_PER_CORE_CLOCK_COUNT: u64 = 40;
/// The reset handler's wipe loop (`cmp`, `beq`, `stm`, `b`) over 4 MiB, one word per pass.
const RAM_WIPE_INSTRUCTIONS: u64 = 4 * 4 * 1024 * 1024 / 4;

fn free_local_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn health_answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /health HTTP/1.1\r\nHost: homemx.lan\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
}

/// What one boot to `/health` measured.
struct BootFigures {
    wall_clock: Duration,
    guest_seconds: f64,
    busy_core_clock_counts: u64,
}

/// Boots the QEMU image and measures it up to the first `/health` 200.
fn boot_to_health(instruction_counting: bool) -> Result<BootFigures> {
    let elf = FirmwareBuild::QEMU.build()?;
    let directory = new_run_directory(if instruction_counting { "figures-icount" } else { "figures" })?;
    let flash = directory.join("flash.img");
    flash_image::create(&flash)?;
    let port = free_local_port()?;
    let config = MachineConfig {
        elf,
        flash_file: flash,
        network: NetworkMode::UserRestricted { forwards: vec![(port, 80)] },
        mac_address: "52:54:00:6d:78:04".into(),
        instruction_counting,
        operation_counts: false,
        echo_log: false,
        tamper_loop: true,
    };
    let machine = Machine::start(&config, &directory)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !health_answers(port) {
        if Instant::now() > deadline {
            return Err("/health did not answer within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall_clock = machine.started().elapsed();
    let ready = machine.wait_ready(0, Duration::from_secs(5))?;
    let guest_seconds = ready.split_whitespace().next().and_then(|stamp| stamp.parse().ok()).unwrap_or(f64::NAN);
    let busy_core_clock_counts = ready
        .rsplit("since start: ")
        .next()
        .and_then(|count| count.trim().parse().ok())
        .ok_or("readiness line without the busy count")?;
    Ok(BootFigures { wall_clock, guest_seconds, busy_core_clock_counts })
}

fn number_after(line: &str, marker: &str) -> Option<u64> {
    line.split(marker).nth(1)?.split([',', ' ']).next()?.parse().ok()
}

/// What a 10 KB message costs the QEMU board's NOR flash, from the spool exercise build.
pub struct SpoolFigures {
    /// Messages committed.
    pub commits: usize,
    /// Bytes programmed per message.
    pub programmed_per_message: u64,
    /// Bytes programmed / message bytes.
    pub programmed_ratio: f64,
    /// The most sectors erased between a message's begin and its commit ("before 250").
    pub most_erased_before_commit: u64,
    /// Instructions per message, begin to commit (`-icount`: the exercise has no peers).
    pub instructions_per_message: u64,
    /// How the spool mounted after the power cut, and its instructions.
    pub mount: (String, u64),
}

/// Runs the spool exercise build under `-icount` (offline: no peers, so `-icount` is exact
/// and harmless), cuts its power, mounts again.
pub fn spool_figures() -> Result<SpoolFigures> {
    let build = FirmwareBuild::QEMU_SPOOL_EXERCISE;
    let elf = build.build()?;
    let directory = new_run_directory("figures-spool")?;
    let flash = directory.join("flash.img");
    flash_image::create(&flash)?;
    let config = MachineConfig { instruction_counting: true, ..MachineConfig::offline(elf, flash, "52:54:00:6d:78:06") };
    const MESSAGES: usize = 20;
    let mut machine = Machine::start(&config, &directory)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let commits = loop {
        let commits: Vec<String> = machine.log.lines().into_iter().filter(|line| line.contains("spool exercise: committed")).collect();
        if commits.len() >= MESSAGES {
            break commits;
        }
        if Instant::now() > deadline {
            return Err("the spool exercise did not commit enough messages".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    machine.kill();
    let machine = Machine::start(&config, &directory)?;
    let mounted = machine.log.wait_for(0, "spool exercise: mounted", Duration::from_secs(60))?;
    drop(machine);
    let total = |marker: &str| commits.iter().filter_map(|line| number_after(line, marker)).sum::<u64>();
    let message_bytes: u64 = commits
        .iter()
        .filter_map(|line| line.split(" tag ").nth(1)?.split(", ").nth(1)?.split(' ').next()?.parse::<u64>().ok())
        .sum();
    let programmed = total("programmed ");
    Ok(SpoolFigures {
        commits: commits.len(),
        programmed_per_message: programmed / commits.len() as u64,
        programmed_ratio: programmed as f64 / message_bytes.max(1) as f64,
        most_erased_before_commit: commits.iter().filter_map(|line| number_after(line, "erased ")).max().unwrap_or(0),
        instructions_per_message: total("busy counts ") * INSTRUCTIONS_PER_CORE_CLOCK_COUNT / commits.len() as u64,
        mount: (
            mounted.split("mounted: ").nth(1).unwrap_or("").split(',').next().unwrap_or("").to_string(),
            number_after(&mounted, "busy counts ").unwrap_or(0) * INSTRUCTIONS_PER_CORE_CLOCK_COUNT,
        ),
    })
}

fn print_spool_figures() -> Result<()> {
    let spool = spool_figures()?;
    println!("spool on the QEMU board's NOR flash (10 KB messages, {} commits, -icount shift=0):", spool.commits);
    println!(
        "  programmed per message: {} B ({:.3}x the message); most sectors erased between begin and commit: {}",
        spool.programmed_per_message, spool.programmed_ratio, spool.most_erased_before_commit
    );
    println!("  instructions per message, begin to commit (incl. XChaCha20-Poly1305): {:.2} M", spool.instructions_per_message as f64 / 1e6);
    println!("  mount after a power cut ({}): {:.2} M instructions", spool.mount.0, spool.mount.1 as f64 / 1e6);
    Ok(())
}

/// Host benchmarks of the protocol crates (each prints its own figures).
const HOST_BENCHMARKS: &[(&str, &str)] = &[("homemx-spool", "spool_figures"), ("homemx-smtp", "smtp_figures")];

/// Prints every figure.
pub fn print_figures() -> Result<()> {
    for (package, example) in HOST_BENCHMARKS {
        println!("{package} ({example}, host):");
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(homemx_qemu::repository_root())
            .args(["run", "--quiet", "--release", "-p", package, "--example", example])
            .status()?;
        if !status.success() {
            return Err(format!("{example} failed").into());
        }
    }
    println!("image sizes (flash = .vector_table+.text+.rodata+.data, static RAM = .data+.bss+.uninit):");
    for firmware in ALL_BUILDS {
        let elf = firmware.build()?;
        let size = image_size(&elf)?;
        println!(
            "  {:<30} flash {:>8} B ({:>6.1} KiB)  static RAM {:>8} B ({:>6.1} KiB)",
            firmware.variant_name(),
            size.flash,
            size.flash as f64 / 1024.0,
            size.static_ram,
            size.static_ram as f64 / 1024.0
        );
    }
    let boot = boot_to_health(false)?;
    println!("boot to /health answering (QEMU, user networking, DHCP):");
    println!(
        "  wall clock from QEMU start to the first 200: {:.0} ms; guest clock at readiness: {:.3} s",
        boot.wall_clock.as_secs_f64() * 1000.0,
        boot.guest_seconds
    );
    let boot = boot_to_health(true)?;
    let instructions = boot.busy_core_clock_counts * INSTRUCTIONS_PER_CORE_CLOCK_COUNT;
    println!(
        "  deterministic (-icount shift=0,sleep=off): {} instructions executed from main to ready ({:.2} M; {:.1} ms at 168 MHz),",
        instructions,
        instructions as f64 / 1e6,
        instructions as f64 / 168e6 * 1000.0
    );
    println!(
        "  plus {:.2} M for the RAM wipe before main (4 instructions per word of 4 MiB); guest clock incl. idle: {:.3} s",
        RAM_WIPE_INSTRUCTIONS as f64 / 1e6,
        boot.guest_seconds
    );
    print_spool_figures()?;
    crate::mail_figures::print_mail_figures()
}
