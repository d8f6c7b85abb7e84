//! Power cuts during a stream of mail: a real client keeps sending 10 KB messages over the
//! WAN while the appliance delivers them to the LAN mailbox host; QEMU is killed (SIGKILL, a
//! power cut) at random moments and restarted and unlocked each time. Afterwards every
//! message that got `250` has arrived, none is corrupt, and duplicates are counted.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, WAN_CLIENT};
use homemx_qemu::owner::{write_configuration, Owner};
use homemx_qemu::peers::MailboxHost;
use homemx_qemu::{flash_image, repository_root};

const POWER_CUTS: usize = 20;
const MESSAGES: usize = 400;
const BODY_LINES: usize = 200;

fn random_below(limit: u64) -> u64 {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut bytes).unwrap();
    u64::from_le_bytes(bytes) % limit
}

/// The body `smtp_stream.py` sends as message `number` (after its headers).
fn expected_body(number: usize) -> String {
    (0..BODY_LINES).map(|index| format!("line {index} of message {number}: the quick brown fox\r\n")).collect()
}

#[test]
fn every_acknowledged_message_arrives_intact_across_power_cuts() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("mx-power-cut").unwrap();
    write_configuration(&directory);
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let mailbox = MailboxHost::start(&namespace, "192.168.77.1:24", "lmtp", &directory.join("mailbox")).expect("mailbox host");
    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let config = MachineConfig::on_network(elf, flash, &network);
    let owner = Owner {
        directory: directory.clone(),
        device: format!("unix:{}", directory.join("serial.sock").display()),
        key: directory.join("admin.key"),
    };
    assert!(owner.homemx(&["keygen", "--no-passphrase", "--out", "admin.key"]).status.success());
    let mut machine = Machine::start(&config, &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    assert!(owner.homemx(&["provision", "--config", "homemx.toml", "--passphrase-file", "passphrase"]).status.success());

    // The sender runs for the whole test (bounded: MESSAGES messages).
    let mut sender = Command::new("ip")
        .args(["netns", "exec", &namespace, "python3"])
        .arg(repository_root().join("qemu/peers/smtp_stream.py"))
        .args(["--source", &WAN_CLIENT.to_string(), "--server", &APPLIANCE.to_string(), "--recipient", "alice@example.org"])
        .args(["--count", &MESSAGES.to_string(), "--body-lines", &BODY_LINES.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("sender starts");
    let accepted = Arc::new(Mutex::new(Vec::<usize>::new()));
    let done = Arc::new(Mutex::new(false));
    let reader = BufReader::new(sender.stdout.take().unwrap());
    let (accepted_writer, done_writer) = (accepted.clone(), done.clone());
    let reader_thread = std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if let Some(number) = line.strip_prefix("accepted ") {
                accepted_writer.lock().unwrap().push(number.parse().unwrap());
            } else if line == "done" {
                *done_writer.lock().unwrap() = true;
            }
        }
    });

    for cut in 0..POWER_CUTS {
        std::thread::sleep(Duration::from_millis(500 + random_below(2500)));
        machine.kill();
        machine = Machine::start(&config, &directory).expect("QEMU restarts");
        machine.wait_ready(0, Duration::from_secs(60)).expect("network up after the cut");
        let unlock = owner.homemx(&["unlock", "--passphrase-file", "passphrase"]);
        assert!(unlock.status.success(), "unlock after cut {cut}");
        let mounted = machine.log.wait_for(0, "unlocked; spool:", Duration::from_secs(30)).unwrap();
        // A record torn by an earlier cut is reported as corrupt once its sector is no longer
        // the newest (no message is affected); damaged messages must never appear.
        assert!(mounted.contains(" 0 damaged"), "cut {cut}: {mounted}");
    }

    // Let the stream finish and the queue drain.
    for _ in 0..600 {
        if *done.lock().unwrap() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = sender.wait();
    let _ = reader_thread.join();
    let accepted = accepted.lock().unwrap().clone();
    let mut arrived = BTreeMap::<usize, usize>::new();
    let mut corrupt = 0;
    let mut drained = false;
    for _ in 0..240 {
        if owner.status()["spool_messages"] == 0 {
            drained = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(drained, "the spool drains to the mailbox host");
    for (body, _) in mailbox.messages() {
        let text = String::from_utf8_lossy(&body);
        let Some(number) = text.split("Message-ID: <power-cut-").nth(1).and_then(|rest| rest.split('@').next()).and_then(|number| number.parse::<usize>().ok()) else {
            corrupt += 1;
            continue;
        };
        if !text.ends_with(&format!("\r\n\r\n{}", expected_body(number))) {
            corrupt += 1;
        }
        *arrived.entry(number).or_default() += 1;
    }
    let missing: Vec<_> = accepted.iter().filter(|number| !arrived.contains_key(number)).collect();
    let duplicates: usize = arrived.values().map(|count| count - 1).sum();
    eprintln!(
        "mx power cuts: {POWER_CUTS} cuts; {} messages acknowledged with 250, {} distinct arrived, {} missing, {} corrupt, {} duplicates",
        accepted.len(),
        arrived.len(),
        missing.len(),
        corrupt,
        duplicates
    );
    assert!(accepted.len() >= 50, "the stream should get well along");
    assert!(missing.is_empty(), "acknowledged messages lost: {missing:?}");
    assert_eq!(corrupt, 0, "corrupt messages delivered");
}
