//! The MX end to end on the isolated network: a real SMTP client (Python's smtplib) on a WAN
//! address, a real LMTP mailbox host (aiosmtpd) on the LAN, the appliance provisioned with
//! the real CLI. Locked, the MX answers 4xx; unlocked it accepts mail for known recipients,
//! refuses unknown ones (550) and relay tricks, refuses SMTP smuggling, and delivers the
//! message byte-exact but for its `Received:` header. With the mailbox host down the
//! message waits in the spool and arrives once when the host is back.

use std::net::SocketAddrV4;
use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, WAN_CLIENT};
use homemx_qemu::owner::{write_configuration, Owner};
use homemx_qemu::peers::{send_mail, MailboxHost};
use homemx_qemu::flash_image;

const MESSAGE: &[u8] = b"From: Someone <someone@remote.test>\r\n\
To: Alice <alice@example.org>\r\n\
Subject: hello from the internet\r\n\
Message-ID: <e2e-1@remote.test>\r\n\
\r\n\
Hello Alice,\r\n\
.this line starts with a dot\r\n\
..and this one with two\r\n\
\r\n\
bye\r\n";

fn code(reply: &serde_json::Value) -> u64 {
    reply[0].as_u64().unwrap_or(0)
}

fn wait_for_health(network: &IsolatedNetwork) {
    let target = SocketAddrV4::new(APPLIANCE, 80);
    network
        .run_inside(move || homemx_qemu::peers::http_get(homemx_qemu::network::LAN_CLIENT, target, "192.168.77.2", "/health").map(|answer| answer.status))
        .unwrap()
        .expect("health answers");
}

#[test]
fn locked_mx_defers_unlocked_mx_accepts_refuses_and_delivers_once() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("mx").unwrap();
    write_configuration(&directory);
    std::fs::write(directory.join("message.eml"), MESSAGE).unwrap();
    std::fs::write(directory.join("smuggling.eml"), b"Subject: smuggled\r\n\r\nhello\n.\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nsmuggled\r\n.\r\n").unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let mailbox_directory = directory.join("mailbox");
    let mut mailbox = MailboxHost::start(&namespace, "192.168.77.1:24", "lmtp", &mailbox_directory).expect("mailbox host");

    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let config = MachineConfig::on_network(elf, flash, &network);
    let machine = Machine::start(&config, &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    wait_for_health(&network);
    let owner = Owner {
        directory: directory.clone(),
        device: format!("unix:{}", directory.join("serial.sock").display()),
        key: directory.join("admin.key"),
    };
    assert!(owner.homemx(&["keygen", "--no-passphrase", "--out", "admin.key"]).status.success());
    let send = |recipients: &[&str], file: &str, raw: bool| {
        send_mail(&namespace, WAN_CLIENT, APPLIANCE, "someone@remote.test", recipients, &directory.join(file), raw).expect("smtp client runs")
    };

    // Not provisioned, then locked: 4xx, so the sender (the provider's backup MX) keeps it.
    let reply = send(&["alice@example.org"], "message.eml", false);
    assert_eq!(code(&reply["connect"]), 421, "unprovisioned: {reply}");
    assert!(owner.homemx(&["provision", "--config", "homemx.toml", "--passphrase-file", "passphrase"]).status.success());
    assert!(owner.homemx(&["lock"]).status.success());
    let reply = send(&["alice@example.org"], "message.eml", false);
    assert_eq!(code(&reply["connect"]), 421, "locked: {reply}");
    assert!(owner.homemx(&["unlock", "--passphrase-file", "passphrase"]).status.success());

    // Unlocked: known recipient accepted, unknown 550, relay and relay tricks refused.
    let reply = send(
        &["alice@example.org", "nobody@example.org", "victim@foreign.test", "victim%foreign.test@example.org", "foreign.test!victim@example.org"],
        "message.eml",
        false,
    );
    assert_eq!(code(&reply["rcpt"]["alice@example.org"]), 250, "{reply}");
    assert_eq!(code(&reply["rcpt"]["nobody@example.org"]), 550, "unknown recipient: {reply}");
    assert_eq!(code(&reply["rcpt"]["victim@foreign.test"]), 550, "relay: {reply}");
    assert_eq!(code(&reply["rcpt"]["victim%foreign.test@example.org"]), 550, "percent hack: {reply}");
    assert_eq!(code(&reply["rcpt"]["foreign.test!victim@example.org"]), 550, "bang path: {reply}");
    assert_eq!(code(&reply["data"]), 250, "accepted after the spool commit: {reply}");

    let messages = mailbox.wait_for_messages(1, Duration::from_secs(60)).expect("delivered to the mailbox host");
    let (body, envelope) = &messages[0];
    assert_eq!(envelope["mail_from"], "someone@remote.test");
    assert_eq!(envelope["rcpt_tos"], serde_json::json!(["alice@example.org"]));
    assert!(body.starts_with(b"Received: from "), "a Received: header comes first");
    let header_end = body.windows(2).enumerate().position(|(index, pair)| pair == b"\r\n" && body.get(index + 2).is_some_and(|&next| next != b'\t' && next != b' ')).unwrap() + 2;
    assert_eq!(&body[header_end..], MESSAGE, "the message arrives byte-exact after the Received: header");

    // SMTP smuggling: bare LF line ends never end the data or start a command.
    let reply = send(&["bob@example.org"], "smuggling.eml", true);
    assert!((500..600).contains(&code(&reply["data"])), "smuggling refused: {reply}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(mailbox.messages().len(), 1, "nothing smuggled through");

    // The mailbox host is down for a while: the message waits, then arrives once.
    mailbox.stop();
    let reply = send(&["bob@example.org"], "message.eml", false);
    assert_eq!(code(&reply["data"]), 250, "{reply}");
    std::thread::sleep(Duration::from_secs(8));
    machine.log.wait_for(0, "deferred, next try", Duration::from_secs(30)).expect("the delivery is deferred");
    let mailbox = MailboxHost::start(&namespace, "192.168.77.1:24", "lmtp", &mailbox_directory).expect("mailbox host again");
    let messages = mailbox.wait_for_messages(2, Duration::from_secs(90)).expect("delivered once the host is back");
    assert_eq!(messages[1].1["rcpt_tos"], serde_json::json!(["bob@example.org"]));
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(mailbox.messages().len(), 2, "delivered exactly once");
    let status = owner.status();
    assert_eq!(status["spool_messages"], 0, "delivered messages leave the spool: {status}");
    let target = SocketAddrV4::new(APPLIANCE, 80);
    let health = network
        .run_inside(move || homemx_qemu::peers::http_get(homemx_qemu::network::LAN_CLIENT, target, "192.168.77.2", "/health"))
        .unwrap()
        .expect("health answers");
    let health: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    homemx_qemu::budgets::assert_stack_within_budget("after provisioning, unlocks, mail in and out", health["stack_high_water_bytes"].as_u64().unwrap_or(0));
    assert_eq!(health["queued_messages"], 0, "the store published the empty queue: {health}");

    // Factory reset with mail in the spool: the plaintext was never on flash, and after the
    // reset nothing of the old spool can be read, not even with the old passphrase.
    let mut mailbox = mailbox;
    mailbox.stop();
    let reply = send(&["alice@example.org"], "message.eml", false);
    assert_eq!(code(&reply["data"]), 250, "{reply}");
    assert_eq!(owner.status()["spool_messages"], 1, "the message waits in the spool");
    let (health, _) = homemx_qemu::peers::health(&network).expect("/health answers");
    assert_eq!(health["queued_messages"], 1, "the store published the waiting message: {health}");
    let flash_file = directory.join("flash.img");
    let flash_bytes = std::fs::read(&flash_file).unwrap();
    assert!(!contains(&flash_bytes, b"this line starts with a dot"), "no plaintext on flash");
    assert!(owner.homemx(&["factory-reset", "--yes"]).status.success());
    assert!(owner.homemx(&["provision", "--config", "homemx.toml", "--passphrase-file", "passphrase"]).status.success());
    let status = owner.status();
    assert_eq!(status["spool_messages"], 0, "the old spool cannot be read after a factory reset: {status}");
    homemx_qemu::peers::assert_short_polls(&network);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}
