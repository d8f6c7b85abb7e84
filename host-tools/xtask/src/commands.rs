//! `build`, `flash-image` and `test`: thin wrappers over cargo and the harness library.

use std::path::PathBuf;
use std::process::Command;

use homemx_qemu::firmware::{detect_toolchain, image_size, Board, FirmwareBuild};
use homemx_qemu::{flash_image, repository_root, Result};

/// Every firmware variant CI builds: both boards, and the RAM-wipe negative control.
pub const ALL_BUILDS: [FirmwareBuild; 3] = [
    FirmwareBuild::QEMU,
    FirmwareBuild { board: Board::QemuMps2, ram_wipe: false, test_features: &[] },
    FirmwareBuild { board: Board::NucleoF429zi, ram_wipe: true, test_features: &[] },
];

fn selected_builds(arguments: &[String]) -> Result<Vec<FirmwareBuild>> {
    match arguments {
        [] => Ok(ALL_BUILDS.to_vec()),
        [flag, board] if flag == "--board" => match board.as_str() {
            "qemu" => Ok(vec![FirmwareBuild::QEMU]),
            "nucleo-f429zi" => Ok(vec![FirmwareBuild { board: Board::NucleoF429zi, ram_wipe: true, test_features: &[] }]),
            "all" => Ok(ALL_BUILDS.to_vec()),
            other => Err(format!("unknown board {other:?}: use qemu, nucleo-f429zi or all").into()),
        },
        _ => Err("usage: cargo xtask build [--board qemu|nucleo-f429zi|all]".into()),
    }
}

/// `cargo xtask build`.
pub fn build(arguments: &[String]) -> Result<()> {
    eprintln!("xtask: building firmware with the {:?} toolchain", detect_toolchain());
    for firmware in selected_builds(arguments)? {
        let elf = firmware.build()?;
        let size = image_size(&elf)?;
        println!(
            "{:<28} flash {:>7} B  static RAM {:>7} B  {}",
            firmware.variant_name(),
            size.flash,
            size.static_ram,
            elf.display()
        );
    }
    Ok(())
}

/// `cargo xtask flash-image PATH`.
pub fn flash_image(arguments: &[String]) -> Result<()> {
    let [path] = arguments else {
        return Err("usage: cargo xtask flash-image PATH".into());
    };
    let path = PathBuf::from(path);
    if path.exists() {
        return Err(format!("{} exists; remove it first if you mean to erase the device", path.display()).into());
    }
    flash_image::create(&path)?;
    println!("wrote an erased 16 MiB flash file with a fresh entropy seed: {}", path.display());
    Ok(())
}

fn run_step(name: &str, command: &mut Command) -> Result<()> {
    eprintln!("\n=== {name}");
    if command.get_current_dir().is_none() {
        command.current_dir(repository_root());
    }
    let status = command.status()?;
    if !status.success() {
        return Err(format!("step failed: {name} ({status})").into());
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Fuzz targets run briefly by `test` (crate directory, target name).
const FUZZ_TARGETS: &[(&str, &str)] = &[
    ("firmware/spool/fuzz", "recover"),
    ("firmware/smtp/fuzz", "command_parser"),
    ("firmware/smtp/fuzz", "data_decoder"),
    ("firmware/smtp/fuzz", "session"),
    ("firmware/smtp/fuzz", "client"),
    ("firmware/keystore/fuzz", "mount"),
    ("firmware/wire/fuzz", "frame_decoder"),
    ("firmware/wire/fuzz", "console_session"),
    ("firmware/dns/fuzz", "dns_response"),
    ("firmware/dns/fuzz", "sntp_reply"),
    ("firmware/pop3/fuzz", "pop3_session"),
    ("firmware/pop3/fuzz", "envelope_recipient"),
    ("firmware/dyndns/fuzz", "http_response"),
    ("firmware/dyndns/fuzz", "update_answer"),
    ("firmware/http/fuzz", "request_head"),
];

/// `cargo xtask test`: host tests, firmware builds, fuzz smoke runs, QEMU end to end.
pub fn test(arguments: &[String]) -> Result<()> {
    let fuzz_seconds: u32 = match arguments {
        [] => 8,
        [flag, seconds] if flag == "--fuzz-seconds" => seconds.parse()?,
        _ => return Err("usage: cargo xtask test [--fuzz-seconds N]".into()),
    };
    run_step("host unit and property tests", cargo().args(["test", "--workspace", "--exclude", "homemx-qemu"]))?;
    run_step("harness unit tests", cargo().args(["test", "-p", "homemx-qemu", "--lib"]))?;
    eprintln!("\n=== firmware images");
    build(&[])?;
    for (crate_directory, target) in FUZZ_TARGETS {
        if fuzz_seconds == 0 {
            break;
        }
        run_step(
            &format!("fuzz {crate_directory} {target} for {fuzz_seconds} s"),
            cargo()
                .current_dir(repository_root().join(crate_directory))
                .env("RUSTC_BOOTSTRAP", "1")
                .args(["fuzz", "run", target, "-s", "none", "--"])
                .arg(format!("-max_total_time={fuzz_seconds}")),
        )?;
    }
    run_step(
        "QEMU end-to-end tests (isolated network namespaces)",
        cargo().args(["test", "-p", "homemx-qemu", "--tests", "--", "--test-threads=2"]),
    )?;
    Ok(())
}
