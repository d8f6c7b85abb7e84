//! The reset path zeroes all SRAM before any Rust code runs. A secret pattern is planted in
//! RAM through QEMU's gdbstub, the machine is reset through QMP (QEMU keeps RAM contents
//! across `system_reset`), and the whole 4 MiB SRAM is dumped once the firmware is up again.
//! The negative control, a build without the wipe, must still hold the secret: otherwise
//! the test would prove nothing.

use std::io::Read;
use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::{flash_image, gdb};

const SRAM_START: u32 = 0x2000_0000;
const SRAM_SIZE: u32 = 4 * 1024 * 1024;
/// Where the secret is planted: RAM the firmware does not touch between two boots (so
/// without the wipe every copy must survive). flip-link puts the stack at the RAM's start,
/// below the statics (`0x2037_xxxx` up; `.bss` is zeroed at every boot anyway, wipe or not): the
/// plants lie in the stack region, from its bottom to over 400 KiB below its top, deeper than
/// the stack ever grows. The wipe covers the statics (`zero-init-ram`) and the stack region
/// (`paint-stack`).
const PLANT_ADDRESSES: [u32; 4] = [0x2000_1000, 0x2010_0000, 0x2020_0000, 0x2030_0000];

fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|window| *window == needle).count()
}

/// Returns how many copies of a freshly planted secret are in SRAM after a reset.
fn copies_after_reset(build: FirmwareBuild, label: &str) -> usize {
    let elf = build.build().expect("firmware builds");
    let directory = new_run_directory(label).unwrap();
    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let config = MachineConfig::offline(elf, flash, "52:54:00:6d:78:03");
    let machine = Machine::start(&config, &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("first boot");

    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut secret).unwrap();
    let writes: Vec<(u32, &[u8])> = PLANT_ADDRESSES.iter().map(|&address| (address, &secret[..])).collect();
    let mut monitor = machine.monitor().expect("QMP");
    gdb::write_memory(&machine.gdb_socket(), &writes).expect("plant the secret");

    let before = directory.join("ram-before-reset.bin");
    monitor.save_physical_memory(SRAM_START as u64, SRAM_SIZE as u64, &before).unwrap();
    let planted = occurrences(&std::fs::read(&before).unwrap(), &secret);
    assert_eq!(planted, PLANT_ADDRESSES.len(), "the secret is in RAM before the reset");

    let lines = machine.log.line_count();
    monitor.system_reset().unwrap();
    machine.log.wait_for(lines, "starting on", Duration::from_secs(30)).expect("firmware restarts after reset");
    machine.wait_ready(lines, Duration::from_secs(60)).expect("second boot");

    let after = directory.join("ram-after-reset.bin");
    monitor.save_physical_memory(SRAM_START as u64, SRAM_SIZE as u64, &after).unwrap();
    occurrences(&std::fs::read(&after).unwrap(), &secret)
}

#[test]
fn reset_wipes_every_secret_from_ram() {
    assert_eq!(copies_after_reset(FirmwareBuild::QEMU, "ram-wipe"), 0, "a secret survived the reset");
}

#[test]
fn negative_control_without_the_wipe_the_secret_survives_reset() {
    let build = FirmwareBuild::QEMU_NO_RAM_WIPE;
    assert_eq!(
        copies_after_reset(build, "ram-wipe-control"),
        PLANT_ADDRESSES.len(),
        "without the wipe QEMU keeps RAM across reset; if not, the wipe test proves nothing"
    );
}
