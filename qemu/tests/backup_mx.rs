//! The backup-MX fetch end to end: Dovecot (Debian) as the provider's POP3 server with STLS
//! and TLS 1.3 (test CA), found by DNS. Messages waiting there arrive at the LAN mailbox host
//! (recipient from `Delivered-To`; one not ours goes to postmaster) and are deleted at
//! Dovecot. A power cut in the middle of a fetch loses and duplicates nothing (counted by
//! Message-ID). A server without STLS and one with a certificate for another name get no
//! login attempt at all, and the alert is raised.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use homemx_qemu::backup_mx::{BackupMx, BackupMxConfig, BackupTls};
use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::flash_image;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, ROUTER};
use homemx_qemu::owner::{provider_configuration, write_secrets, Owner, POP3_PASSWORD};
use homemx_qemu::peers::MailboxHost;
use homemx_qemu::provider::{add_wan_address, DnsServer, SntpConfig, SntpServer, StripMode, StripProxy, TestCa, POP_NAME, WRONG_NAME};
use serde_json::json;

const POP_SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 110);
const POP_USER: &str = "backup-mx@example.org";
/// A TCP relay in front of the backup MX, stopped to drop a fetch's connection.
const RELAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 112);

fn write_configuration(directory: &Path, ca: &TestCa) {
    write_secrets(directory);
    let mut text = provider_configuration(&ca.ca_certificate, &["alice@example.org", "bob@example.org"], "");
    text.push_str(&format!(
        "\n[backup_mx]\nhost = \"{POP_NAME}\"\nport = 110\ntls = \"starttls\"\nuser_name = \"{POP_USER}\"\npoll_interval_seconds = 3600\npassword_file = \"secrets/pop3.password\"\nca_certificate = \"{}\"\n",
        ca.ca_certificate.display()
    ));
    std::fs::write(directory.join("homemx.toml"), text).unwrap();
}

fn message(number: usize, recipient: &str, padding: usize) -> Vec<u8> {
    let mut text = format!(
        "Return-Path: <sender{number}@remote.test>\r\nDelivered-To: {recipient}\r\nFrom: sender{number}@remote.test\r\nTo: {recipient}\r\nSubject: waited at the backup MX {number}\r\nMessage-ID: <backup-{number}@remote.test>\r\n\r\nHello {number}\r\n.leading dot\r\n"
    );
    for line in 0..padding {
        text.push_str(&format!("padding line {line:06} of message {number} ..........................................\r\n"));
    }
    text.into_bytes()
}

fn message_ids(mailbox: &MailboxHost) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (body, _) in mailbox.messages() {
        let text = String::from_utf8_lossy(&body).to_string();
        if let Some(line) = text.lines().find(|line| line.starts_with("Message-ID: <backup-")) {
            *counts.entry(line.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn backup_mx_mail_comes_home_once_and_no_login_without_verified_tls() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("backup-mx").unwrap();
    let ca = TestCa::create(&directory.join("ca")).expect("test CA");
    write_configuration(&directory, &ca);
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let ns = Some(namespace.as_str());
    add_wan_address(&namespace, POP_SERVER).unwrap();
    let zone = directory.join("zone.json");
    std::fs::write(&zone, serde_json::to_vec(&json!({"ttl": 60, "names": {POP_NAME: {"A": [POP_SERVER.to_string()]}}})).unwrap()).unwrap();
    let _dns = DnsServer::start(ns, &["192.168.77.1:53"], &zone, &directory.join("dns")).expect("DNS server");
    let _sntp = SntpServer::start(ns, &SntpConfig::new(format!("{ROUTER}:123")), &directory.join("sntp")).expect("SNTP server");
    let mailbox = MailboxHost::start(&namespace, "192.168.77.1:24", "lmtp", &directory.join("mailbox")).expect("mailbox host");
    let listen = format!("{POP_SERVER}:110");
    let good = BackupMxConfig::new(listen.clone(), BackupTls::StartTls, POP_USER, POP3_PASSWORD).with_certificate(ca.leaf(POP_NAME).unwrap());
    let mut dovecot = BackupMx::start(ns, &good, &directory.join("dovecot")).expect("Dovecot starts");
    dovecot.deliver(&message(1, "alice@example.org", 0)).unwrap();
    dovecot.deliver(&message(2, "bob@example.org", 0)).unwrap();
    dovecot.deliver(&message(3, "stranger@elsewhere.example", 0)).unwrap();

    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let config = MachineConfig::on_network(elf.clone(), flash.clone(), &network);
    let mut machine = Machine::start(&config, &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    let owner = Owner::at(&directory);
    owner.provision();
    machine.log.wait_for(0, "time: clock set", Duration::from_secs(60)).expect("the clock is set");
    assert!(owner.homemx(&["fetch-now"]).status.success());

    // 1. The three messages come home and are deleted at the backup MX.
    wait_for("three fetched messages at the mailbox host", Duration::from_secs(90), || message_ids(&mailbox).len() == 3);
    wait_for("the mailbox at the backup MX to be empty", Duration::from_secs(30), || dovecot.remaining().is_empty());
    let messages = mailbox.messages();
    let recipients: Vec<String> = messages.iter().map(|(_, envelope)| envelope["rcpt_tos"][0].as_str().unwrap_or("").to_string()).collect();
    assert!(recipients.contains(&"alice@example.org".to_string()) && recipients.contains(&"bob@example.org".to_string()), "{recipients:?}");
    assert!(recipients.contains(&"postmaster@example.org".to_string()), "a stranger's mail goes to postmaster: {recipients:?}");
    let (body, _) = messages.iter().find(|(body, _)| String::from_utf8_lossy(body).contains("backup-1@")).unwrap();
    assert!(body.starts_with(b"Received: from pop.example.net"), "our Received: line first");
    let original = message(1, "alice@example.org", 0);
    assert!(body.ends_with(&original), "the message arrives byte-exact after the Received: line");
    assert!(dovecot.logins() >= 1);

    // 2. A power cut in the middle of a fetch of five larger messages: after the restart
    //    every message arrives exactly once. The mailbox host is down meanwhile, so that the cut
    //    falls on the fetch alone: a cut between the mailbox host's "250" and the spool's record
    //    of it would deliver that message twice, which is SMTP's at-least-once (RFC 5321 §6.1),
    //    not the fetch's exactly-once this step is about.
    drop(mailbox);
    for number in 10..15 {
        dovecot.deliver(&message(number, "alice@example.org", 1500)).unwrap();
    }
    let line = machine.log.lines().len();
    assert!(owner.homemx(&["fetch-now"]).status.success());
    machine.log.wait_for(line, "fetched into the spool", Duration::from_secs(60)).expect("the fetch is under way");
    std::thread::sleep(Duration::from_millis(300));
    machine.kill();
    let machine = Machine::start(&config, &directory).expect("QEMU restarts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up again");
    let mailbox = MailboxHost::start(&namespace, "192.168.77.1:24", "lmtp", &directory.join("mailbox")).expect("the mailbox host again");
    assert!(owner.homemx(&["unlock", "--passphrase-file", "passphrase"]).status.success());
    // The deliveries refused while the mailbox host was down, now.
    assert!(owner.homemx(&["flush"]).status.success());
    wait_for("all eight messages at the mailbox host", Duration::from_secs(120), || message_ids(&mailbox).len() == 8);
    wait_for("the backup MX to be empty again", Duration::from_secs(60), || dovecot.remaining().is_empty());
    std::thread::sleep(Duration::from_secs(5));
    let counts = message_ids(&mailbox);
    let duplicates: usize = counts.values().map(|count| count - 1).sum();
    eprintln!("power cut mid-fetch: {} distinct messages, {duplicates} duplicates", counts.len());
    assert_eq!(counts.len(), 8, "nothing lost: {counts:?}");
    assert_eq!(duplicates, 0, "nothing twice: {counts:?}");

    // 2b. The connection drops in the middle of a fetch (a relay on the path dies): the
    //     messages committed before stay seen, the rest come with the next fetch, none twice.
    for number in 30..34 {
        dovecot.deliver(&message(number, "bob@example.org", 12_000)).unwrap();
    }
    add_wan_address(&namespace, RELAY).unwrap();
    let mut relay = StripProxy::start(ns, &format!("{RELAY}:110"), &listen, StripMode::Pass, &directory.join("relay")).expect("TCP relay");
    std::fs::write(&zone, serde_json::to_vec(&json!({"ttl": 60, "names": {POP_NAME: {"A": [RELAY.to_string()]}}})).unwrap()).unwrap();
    let line = machine.log.lines().len();
    assert!(owner.homemx(&["fetch-now"]).status.success());
    machine.log.wait_for(line, "fetched into the spool", Duration::from_secs(60)).expect("the fetch is under way");
    relay.stop();
    machine
        .log
        .wait_for(line, "fetch failed", Duration::from_secs(60))
        .expect("the fetch was cut off by the drop");
    std::fs::write(&zone, serde_json::to_vec(&json!({"ttl": 60, "names": {POP_NAME: {"A": [POP_SERVER.to_string()]}}})).unwrap()).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(owner.homemx(&["fetch-now"]).status.success());
    wait_for("all twelve messages at the mailbox host", Duration::from_secs(120), || message_ids(&mailbox).len() == 12);
    wait_for("the backup MX to be empty after the drop", Duration::from_secs(60), || dovecot.remaining().is_empty());
    std::thread::sleep(Duration::from_secs(5));
    let counts = message_ids(&mailbox);
    let duplicates: usize = counts.values().map(|count| count - 1).sum();
    eprintln!("dropped connection mid-fetch: {} distinct messages, {duplicates} duplicates", counts.len());
    assert_eq!((counts.len(), duplicates), (12, 0), "nothing lost, nothing twice: {counts:?}");

    // 3. A server without STLS, 4. one with a certificate for another name: no login attempt.
    for (label, tls, leaf) in [("no-stls", BackupTls::NoTls, None), ("wrong-name", BackupTls::StartTls, Some(WRONG_NAME))] {
        dovecot.stop();
        let mut config = BackupMxConfig::new(listen.clone(), tls, POP_USER, POP3_PASSWORD);
        if let Some(name) = leaf {
            config = config.with_certificate(ca.leaf(name).unwrap());
        }
        dovecot = BackupMx::start(ns, &config, &directory.join(label)).expect("impostor Dovecot");
        dovecot.deliver(&message(20, "alice@example.org", 0)).unwrap();
        let line = machine.log.lines().len();
        assert!(owner.homemx(&["fetch-now"]).status.success());
        machine.log.wait_for(line, "ALERT", Duration::from_secs(60)).expect("the alert is raised");
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(dovecot.login_attempts(), 0, "{label}: no login was attempted:\n{}", dovecot.log());
        assert_eq!(dovecot.remaining().len(), 1, "{label}: nothing fetched");
    }
    drop(machine);
}
