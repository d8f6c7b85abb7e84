//! The tamper loop (issue 16, seed 000 §8.3), driven from outside the guest through emulated
//! hardware: the harness fits a PCA9552 I²C expander on the SBCon's bus (`-device pca9552`,
//! `MachineConfig::tamper_loop`) and this test opens and closes its pin with QMP `qom-set`, as
//! a door contact would; the firmware reads it over its bit-banged I²C every 150 ms.
//!
//! A provisioned, unlocked appliance (clock set by SNTP) with the loop closed takes mail on 25.
//! The loop opens: the device locks at once through the owner's lock path (the MX greets with
//! 421), the `tamper` alert with its wall-clock time is on the status page and in `homemx
//! status`, the log has the event, and `homemx unlock` is refused with "close the loop first".
//! The loop closes; after a reset (QMP `system_reset`: RAM wiped, the expander back to its reset
//! state, closed) the device is locked, unlocks, and the alert is back from flash with the
//! persisted event's time in the log; `homemx alert ack tamper` ends it, and it stays gone after
//! another reset. Mail flows again. Then the loop opens and closes while the owner has locked
//! the device: the event waits in RAM, is written at the next unlock and survives a reset.
//!
//! Without the tamper check (the console's `tamper_opened` not locking, or the tamper task not
//! run) the MX keeps answering 220 after the loop opens and the first 421 assertion fails
//! (checked by hand with the lock taken out of `tamper_opened`: 220 and 250 five seconds after
//! the loop opened); without the unlock refusal (`tamper::loop_open` in `DeviceConsole::unlock`)
//! the refused-unlock assertion fails (checked by hand too).

use std::time::{Duration, Instant};

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::flash_image;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, ROUTER, WAN_CLIENT};
use homemx_qemu::owner::{provider_configuration, write_secrets, Owner};
use homemx_qemu::peers::{send_mail, MailboxHost};
use homemx_qemu::provider::{SntpConfig, SntpServer, TestCa};
use homemx_qemu::status_page::status_json;
use serde_json::Value;

/// How soon after the loop opens the device must be locked: three polls (150 ms each) and the
/// lock itself, with room for a loaded host.
const REACTION: Duration = Duration::from_secs(5);

fn tamper_alert(alerts: &Value) -> Option<Value> {
    alerts.as_array()?.iter().find(|alert| alert["kind"] == "tamper").cloned()
}

fn unlock(owner: &Owner) -> std::process::Output {
    owner.homemx(&["unlock", "--passphrase-file", "passphrase"])
}

/// Resets the machine (RAM wiped at reset, the flash kept) and waits until it is ready again.
fn reset(machine: &Machine) {
    let lines = machine.log.line_count();
    machine.monitor().expect("QMP").system_reset().expect("system_reset");
    machine.log.wait_for(lines, "starting on", Duration::from_secs(30)).expect("the firmware restarts");
    machine.wait_ready(lines, Duration::from_secs(60)).expect("ready after the reset");
}

#[test]
fn opening_the_tamper_loop_locks_alerts_until_acknowledged_and_refuses_unlock_while_open() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("tamper").unwrap();
    let ca = TestCa::create(&directory.join("ca")).expect("test CA");
    write_secrets(&directory);
    std::fs::write(directory.join("homemx.toml"), provider_configuration(&ca.ca_certificate, &["alice@example.org"], "")).unwrap();
    std::fs::write(directory.join("message.eml"), b"Subject: in\r\n\r\nhello\r\n").unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let _sntp = SntpServer::start(Some(namespace.as_str()), &SntpConfig::new(format!("{ROUTER}:123")), &directory.join("sntp")).expect("SNTP server");
    let mailbox = MailboxHost::start(&namespace, "192.168.77.1:24", "lmtp", &directory.join("mailbox")).expect("mailbox host");
    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let config = MachineConfig::on_network(elf, flash, &network);
    assert!(config.tamper_loop, "the harness fits the tamper loop by default");
    let machine = Machine::start(&config, &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    let owner = Owner::at(&directory);
    owner.provision();
    machine.log.wait_for(0, "time: clock set", Duration::from_secs(60)).expect("the clock is set by SNTP");
    let send = || {
        send_mail(&namespace, WAN_CLIENT, format!("{APPLIANCE}:25"), "bob@remote.example", &["alice@example.org"], &directory.join("message.eml"), false)
            .expect("smtp client runs")
    };

    // Closed loop, unlocked: mail goes in and out.
    assert_eq!(status_json(&network)["system"]["tamper_loop"], "closed");
    let reply = send();
    assert_eq!(reply["connect"][0], 220, "{reply}");
    assert_eq!(reply["data"][0], 250, "{reply}");
    mailbox.wait_for_messages(1, Duration::from_secs(60)).expect("delivered to the mailbox host");

    // The loop opens: locked at once, the MX says 421, the alert has its time.
    let lines = machine.log.line_count();
    let opened_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let opened = Instant::now();
    machine.set_tamper_loop(true).expect("qom-set opens the loop");
    let reply = loop {
        let reply = send();
        if reply["connect"][0] == 421 || opened.elapsed() > REACTION {
            break reply;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(reply["connect"][0], 421, "the MX of a device whose loop opened, {:?} after: {reply}", opened.elapsed());
    eprintln!("the MX answered 421 {:?} after the loop opened", opened.elapsed());
    machine.log.wait_for(lines, "ALERT tamper: tamper loop opened at unix time", REACTION).expect("the event is logged with its time");
    machine.log.wait_for(lines, "locked by the tamper loop", REACTION).expect("the device locked itself");
    let status = owner.status();
    assert_eq!(status["state"], "Locked", "{status}");
    let alert = tamper_alert(&status["alerts"]).unwrap_or_else(|| panic!("homemx status shows the tamper alert: {status}"));
    assert_eq!(alert["needs_acknowledgement"], true, "{alert}");
    let first_seen = alert["first_seen_unix"].as_u64().unwrap_or_else(|| panic!("the alert has its wall-clock time: {alert}"));
    assert!(first_seen.abs_diff(opened_unix) <= 10, "the alert's time {first_seen} is when the loop opened ({opened_unix})");
    let cli = owner.homemx(&["status"]);
    let cli_text = String::from_utf8_lossy(&cli.stdout).to_string();
    assert!(cli_text.contains("tamper"), "{cli_text}");
    let page = status_json(&network);
    assert_eq!(page["system"]["tamper_loop"], "open", "{page}");
    let alert = tamper_alert(&page["alerts"]).unwrap_or_else(|| panic!("the status page shows the tamper alert: {page}"));
    assert!(alert["first_seen_unix"].as_u64().is_some(), "{alert}");

    // Unlocking while the loop is open is refused, with the reason.
    let refused = unlock(&owner);
    assert!(!refused.status.success(), "unlock with the loop open");
    let stderr = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(stderr.contains("TamperLoopOpen") && stderr.contains("close the loop first"), "{stderr}");
    assert_eq!(owner.status()["state"], "Locked");
    assert_eq!(send()["connect"][0], 421);

    // The loop closes; the alert stays. After a reset the device is locked, unlocks, and the
    // alert is back from flash with the event's time.
    let lines = machine.log.line_count();
    machine.set_tamper_loop(false).expect("qom-set closes the loop");
    machine.log.wait_for(lines, "the loop is closed again", REACTION).expect("the closing is logged");
    assert!(tamper_alert(&owner.status()["alerts"]).is_some(), "closing the loop does not end the alert");
    reset(&machine);
    assert_eq!(status_json(&network)["system"]["tamper_loop"], "closed");
    let lines = machine.log.line_count();
    let unlocked = unlock(&owner);
    assert!(unlocked.status.success(), "unlock with the loop closed: {}", String::from_utf8_lossy(&unlocked.stderr));
    machine.log.wait_for(lines, "tamper: the loop was opened at unix time", Duration::from_secs(10)).expect("the persisted event");
    let status = owner.status();
    assert!(tamper_alert(&status["alerts"]).is_some(), "the alert survived the reset: {status}");
    assert!(tamper_alert(&status_json(&network)["alerts"]).is_some(), "and is on the page");

    // Only the owner ends it; it stays gone after another reset.
    let acknowledged = owner.homemx(&["alert", "ack", "tamper"]);
    assert!(acknowledged.status.success(), "{}", String::from_utf8_lossy(&acknowledged.stderr));
    assert!(tamper_alert(&owner.status()["alerts"]).is_none(), "acknowledged");
    reset(&machine);
    assert!(unlock(&owner).status.success());
    let status = owner.status();
    assert!(tamper_alert(&status["alerts"]).is_none(), "the acknowledgement was persisted: {status}");
    assert!(tamper_alert(&status_json(&network)["alerts"]).is_none());

    // Mail flows again.
    let reply = send();
    assert_eq!(reply["data"][0], 250, "{reply}");
    mailbox.wait_for_messages(2, Duration::from_secs(60)).expect("delivered after the unlock");

    // Opened and closed while the owner had locked the device: the store is closed, so the
    // event waits in RAM and is written at the next unlock; it then survives a reset too.
    assert!(owner.homemx(&["lock"]).status.success());
    let lines = machine.log.line_count();
    machine.set_tamper_loop(true).expect("qom-set opens the loop");
    machine.log.wait_for(lines, "tamper: the device was locked already", REACTION).expect("noticed while locked");
    assert!(!unlock(&owner).status.success(), "unlock with the loop open");
    machine.set_tamper_loop(false).expect("qom-set closes the loop");
    machine.log.wait_for(lines, "the loop is closed again", REACTION).expect("the closing is logged");
    assert!(unlock(&owner).status.success(), "unlock with the loop closed");
    assert!(tamper_alert(&owner.status()["alerts"]).is_some(), "the alert raised while locked is shown after the unlock");
    reset(&machine);
    let lines = machine.log.line_count();
    assert!(unlock(&owner).status.success());
    machine.log.wait_for(lines, "tamper: the loop was opened at unix time", Duration::from_secs(10)).expect("the held event was written");
    assert!(tamper_alert(&owner.status()["alerts"]).is_some(), "the alert raised while locked survived the reset");
    assert!(owner.homemx(&["alert", "ack", "tamper"]).status.success());
    assert!(tamper_alert(&owner.status()["alerts"]).is_none());
}

/// Without the expander (`tamper_loop: false`) the board reports no loop and the status page
/// says so.
#[test]
fn without_the_expander_no_tamper_loop_is_fitted() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("tamper-none").unwrap();
    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let config = MachineConfig { tamper_loop: false, ..MachineConfig::on_network(elf, flash, &network) };
    let machine = Machine::start(&config, &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    machine.log.wait_for(0, "tamper: no tamper loop fitted", Duration::from_secs(10)).expect("logged");
    assert_eq!(status_json(&network)["system"]["tamper_loop"], "not_fitted");
}
