//! The real spool on the QEMU board's flash, with the power cut (SIGKILL to QEMU) at random
//! moments while it writes, reads back and deletes 10 KB messages (firmware test build with
//! the `spool-exercise` feature, see `firmware/app/src/spool_exercise.rs`).
//!
//! After every restart: every message whose commit was logged and whose deletion had not
//! started is present and intact, nothing appears that was never being written, the mount
//! finds no corrupt record or damaged message, and the spool keeps working.

use std::collections::BTreeSet;
use std::io::Read;
use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::flash_image;

const POWER_CUTS: usize = 8;

fn random_below(limit: u64) -> u64 {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut bytes).unwrap();
    u64::from_le_bytes(bytes) % limit
}

fn tags(lines: &[String], marker: &str) -> BTreeSet<String> {
    lines
        .iter()
        .filter_map(|line| line.split(marker).nth(1))
        .map(|rest| rest.split([',', ' ']).next().unwrap_or_default().to_string())
        .collect()
}

fn field(line: &str, after: &str) -> u64 {
    line.split(after).nth(1).and_then(|rest| rest.split([',', ' ']).next()).and_then(|number| number.parse().ok()).unwrap_or(u64::MAX)
}

#[test]
fn committed_messages_survive_power_cuts_on_the_board_flash() {
    let build = FirmwareBuild::QEMU_SPOOL_EXERCISE;
    let elf = build.build().expect("firmware builds");
    let directory = new_run_directory("spool-power-cut").unwrap();
    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let config = MachineConfig::offline(elf, flash, "52:54:00:6d:78:05");

    let mut committed = BTreeSet::new();
    let mut deleting = BTreeSet::new();
    let mut writing = BTreeSet::new();
    let mut checked_after_restart = 0;
    for boot in 0..=POWER_CUTS {
        let mut machine = Machine::start(&config, &directory).expect("QEMU starts");
        let mounted = machine.log.wait_for(0, "spool exercise: mounted", Duration::from_secs(60)).expect("spool mounts");
        let checked = machine.log.wait_for(0, "spool exercise: checked", Duration::from_secs(60)).expect("first check");
        let lines = machine.log.lines();
        // A record torn by an earlier cut is reported as corrupt once its sector is no longer
        // the newest (no message is affected); damaged messages must never appear.
        assert!(mounted.contains(" 0 damaged messages"), "boot {boot}: {mounted}");
        assert!(checked.contains(", 0 bad"), "boot {boot}: {checked}");
        let present = tags(&lines, "present tag ");
        let must_survive: BTreeSet<_> = committed.difference(&deleting).cloned().collect();
        assert!(must_survive.is_subset(&present), "boot {boot}: lost committed messages {:?}", must_survive.difference(&present).collect::<Vec<_>>());
        let could_exist: BTreeSet<_> = committed.union(&writing).cloned().collect();
        assert!(present.is_subset(&could_exist), "boot {boot}: messages that were never written: {:?}", present.difference(&could_exist).collect::<Vec<_>>());
        checked_after_restart += present.len();

        if boot == POWER_CUTS {
            // Last boot: let it run a while and check it still works after all the cuts.
            let from = machine.log.line_count();
            machine.log.wait_for(from, "spool exercise: committed", Duration::from_secs(30)).expect("still writes");
            machine.log.wait_for(from, "spool exercise: checked", Duration::from_secs(30)).expect("still reads");
            break;
        }
        std::thread::sleep(Duration::from_millis(150 + random_below(1500)));
        machine.kill();
        let lines = machine.log.lines();
        assert!(!lines.iter().any(|line| line.contains("ERROR")), "boot {boot}: errors in the log: {:?}", lines.iter().filter(|line| line.contains("ERROR")).collect::<Vec<_>>());
        for line in lines.iter().filter(|line| line.contains("spool exercise: committed")) {
            assert_eq!(field(line, "sectors erased ").min(field(line, "erased ")), 0, "no erase between begin and commit: {line}");
        }
        committed.extend(lines.iter().filter(|line| line.contains("spool exercise: committed")).filter_map(|line| line.split(" tag ").nth(1)).map(|rest| rest.split([',', ' ']).next().unwrap().to_string()));
        deleting.extend(tags(&lines, "deleting tag "));
        writing.extend(tags(&lines, "writing tag "));
    }
    eprintln!(
        "spool power cuts: {POWER_CUTS} cuts, {} messages committed, {} deletions started, {} present-and-intact checks after restarts",
        committed.len(),
        deleting.len(),
        checked_after_restart
    );
    assert!(committed.len() >= POWER_CUTS, "the exercise committed too few messages to mean anything");
}
