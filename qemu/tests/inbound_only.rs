//! An inbound-only MX, set up the way a new owner would: the real `homemx init` with flags and
//! `--no-smarthost` writes `homemx.toml` (and says no password file or trust anchor is needed),
//! `homemx provision` accepts that file unchanged on a factory-fresh device, the status page says
//! it is an inbound-only MX, a WAN message to a recipient reaches the LAN mailbox host (LMTP)
//! byte-exact after its `Received:` header, a LAN client's mail to our domain is delivered too,
//! and a LAN client's mail to a foreign address gets `550 5.7.1 outbound mail is not configured`
//! on 25 (on 587, without a user, `530` at MAIL; a WAN client still gets the plain relay denial).

use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::flash_image;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT, WAN_CLIENT};
use homemx_qemu::owner::{Owner, PASSPHRASE};
use homemx_qemu::peers::{expect_250, send_mail, split_received, MailboxHost};
use homemx_qemu::status_page::{get, status_json};

const MESSAGE: &[u8] = b"From: Someone <someone@remote.test>\r\n\
To: Alice <alice@example.org>\r\n\
Subject: inbound only\r\n\
Message-ID: <inbound-only-1@remote.test>\r\n\
\r\n\
Mail in works without a smarthost.\r\n";

/// The refusal a LAN client gets for a foreign recipient without a smarthost.
const NOT_CONFIGURED: &str = "5.7.1 outbound mail is not configured";

#[test]
fn init_without_a_smarthost_provisions_an_inbound_only_mx() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("inbound_only").unwrap();
    std::fs::write(directory.join("message.eml"), MESSAGE).unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let mailbox = MailboxHost::start(&namespace, "192.168.77.1:24", "lmtp", &directory.join("mailbox")).expect("mailbox host");
    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let machine = Machine::start(&MachineConfig::on_network(elf, flash, &network), &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    homemx_qemu::peers::health(&network).expect("/health answers");
    let owner = Owner::at(&directory);

    // The new owner's first five minutes: `homemx init` with flags, no smarthost.
    let init = owner.homemx(&[
        "--json",
        "init",
        "--domain",
        "example.org",
        "--recipient",
        "alice@example.org",
        "--recipient",
        "bob@example.org",
        "--lan-prefix",
        "192.168.77.0/24",
        "--mailbox-host",
        "192.168.77.1",
        "--mailbox-protocol",
        "lmtp",
        "--mailbox-port",
        "24",
        "--no-smarthost",
        "--out",
        "homemx.toml",
    ]);
    assert!(init.status.success(), "init works");
    let report: serde_json::Value = serde_json::from_slice(&init.stdout).expect("init --json is JSON");
    assert_eq!(report["inbound_only"], true, "{report}");
    assert_eq!(report["needed_files"], serde_json::json!([]), "an inbound-only MX needs no password file or anchor: {report}");
    let written = std::fs::read(directory.join("homemx.toml")).unwrap();
    // The storage passphrase is provision's, not init's: the one file the owner writes.
    std::fs::write(directory.join("passphrase"), format!("{PASSPHRASE}\n")).unwrap();
    owner.provision();
    assert_eq!(std::fs::read(directory.join("homemx.toml")).unwrap(), written, "provisioned from init's file unchanged");
    let status = owner.status();
    assert_eq!(status["configured"], true, "{status}");
    assert_eq!(status["credentials"]["smarthost_password"], false, "{status}");
    // The status page says what the appliance is without a smarthost.
    let page = get(&network, LAN_CLIENT, &APPLIANCE.to_string(), "/");
    assert!(page.body.contains("none: an inbound-only MX (outbound mail is not configured)"), "{}", page.body);
    assert_eq!(status_json(&network)["smarthost"]["host"], serde_json::Value::Null);

    let send = |source, port: u16, sender: &str, recipients: &[&str]| {
        send_mail(&namespace, source, format!("{APPLIANCE}:{port}"), sender, recipients, &directory.join("message.eml"), false)
            .expect("smtp client runs")
    };
    // Inbound: a WAN message to a recipient is delivered to the LAN mailbox host.
    let reply = send(WAN_CLIENT, 25, "someone@remote.test", &["alice@example.org"]);
    expect_250(&reply).unwrap();
    let messages = mailbox.wait_for_messages(1, Duration::from_secs(60)).expect("delivered to the mailbox host");
    assert_eq!(messages[0].1["mail_from"], "someone@remote.test");
    assert_eq!(messages[0].1["rcpt_tos"], serde_json::json!(["alice@example.org"]));
    let (_, rest) = split_received(&messages[0].0).expect("a Received: header first");
    assert_eq!(rest, MESSAGE, "byte-exact after the Received: header");

    // Outbound is not configured: a LAN client's foreign recipient is refused with the reason on
    // 25, and its mail to our own domain still goes in. The submission port wants AUTH first
    // (no users, no opt-in to relaying by LAN address): `530` at MAIL.
    let reply = send(LAN_CLIENT, 587, "bob@example.org", &["carol@remote.example", "alice@example.org"]);
    assert_eq!(reply["mail"][0], 530, "port 587 without AUTH: {reply}");
    let reply = send(LAN_CLIENT, 25, "bob@example.org", &["carol@remote.example", "alice@example.org"]);
    let refused = &reply["rcpt"]["carol@remote.example"];
    assert_eq!(refused[0], 550, "port 25: {reply}");
    assert_eq!(refused[1], NOT_CONFIGURED, "port 25: {reply}");
    assert_eq!(reply["rcpt"]["alice@example.org"][0], 250, "port 25: {reply}");
    expect_250(&reply).unwrap();
    let messages = mailbox.wait_for_messages(2, Duration::from_secs(60)).expect("the LAN's local mail is delivered");
    for (_, envelope) in &messages[1..] {
        assert_eq!(envelope["rcpt_tos"], serde_json::json!(["alice@example.org"]), "only the local recipient: {envelope}");
    }
    // The world still gets the plain relay denial.
    let reply = send(WAN_CLIENT, 25, "someone@remote.test", &["carol@remote.example"]);
    assert_eq!(reply["rcpt"]["carol@remote.example"][0], 550, "{reply}");
    assert_eq!(reply["rcpt"]["carol@remote.example"][1], "5.7.1 Relay access denied", "{reply}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(mailbox.messages().len(), 2, "nothing else arrived");
    assert_eq!(owner.status()["spool_messages"], 0, "delivered mail left the spool");
    homemx_qemu::peers::assert_short_polls(&network);
}
