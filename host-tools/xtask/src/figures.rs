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

/// Boots the QEMU image and returns (wall-clock to first `/health` 200, guest seconds at
/// the readiness log line).
fn boot_to_health(instruction_counting: bool) -> Result<(Duration, f64)> {
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
        echo_log: false,
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
    Ok((wall_clock, guest_seconds))
}

/// Prints every figure.
pub fn print_figures() -> Result<()> {
    println!("image sizes (flash = .vector_table+.text+.rodata+.data, static RAM = .data+.bss+.uninit):");
    for firmware in ALL_BUILDS {
        let elf = firmware.build()?;
        let size = image_size(&elf)?;
        println!(
            "  {:<30} flash {:>8} B ({:>6.1} KiB)  static RAM {:>8} B ({:>6.1} KiB)",
            format!("{}{}", firmware.board.name(), if firmware.ram_wipe { "" } else { " (no RAM wipe)" }),
            size.flash,
            size.flash as f64 / 1024.0,
            size.static_ram,
            size.static_ram as f64 / 1024.0
        );
    }
    let (wall_clock, guest_seconds) = boot_to_health(false)?;
    println!("boot to /health answering (QEMU, user networking):");
    println!("  wall clock from QEMU start: {:.0} ms; guest clock at readiness: {:.3} s", wall_clock.as_secs_f64() * 1000.0, guest_seconds);
    let (wall_clock, guest_seconds) = boot_to_health(true)?;
    println!("  with -icount shift=0,sleep=off: wall clock {:.0} ms; guest clock at readiness {:.3} s", wall_clock.as_secs_f64() * 1000.0, guest_seconds);
    println!("  (the guest clock includes idle time spent waiting for DHCP; it bounds the instructions from above)");
    Ok(())
}
