//! Bare line ends in fetched mail, end to end: a backup MX that hands out a message byte for
//! byte (`qemu/peers/pop3_server.py`, STLS + TLS 1.3 from the test CA; Dovecot would rewrite
//! the line ends) serves one whose body has bare LF and bare CR line ends with `.` lines after
//! them and a complete SMTP transaction behind the first one (the smuggling payload). The LAN
//! mailbox host is one that is open to smuggling: it takes a bare LF or CR as a line end.
//! The appliance normalises the fetched body to CRLF before it enters the spool and
//! dot-stuffs after any line end, so the mailbox host gets exactly one message, CRLF only,
//! every line intact, and nothing smuggled in.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::flash_image;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, ROUTER};
use homemx_qemu::owner::{provider_configuration, write_secrets, Owner, POP3_PASSWORD};
use homemx_qemu::peers::MailboxHost;
use homemx_qemu::pop3_server::{Pop3Server, Pop3Tls};
use homemx_qemu::provider::{add_wan_address, DnsServer, SntpConfig, SntpServer, TestCa, POP_NAME};
use serde_json::json;

const POP_SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 110);
const POP_USER: &str = "backup-mx@example.org";

/// The message as it lies at the backup MX.
const SERVED: &[u8] = b"Delivered-To: alice@example.org\r\n\
From: mallory@remote.test\r\n\
To: alice@example.org\r\n\
Subject: bare line ends\r\n\
Message-ID: <bare-line-ends@remote.test>\r\n\
\r\n\
first line\n\
.\n\
MAIL FROM:<mallory@remote.test>\n\
RCPT TO:<bob@example.org>\n\
DATA\n\
Subject: smuggled\n\
\n\
smuggled body\n\
.\n\
an old Mac line\rand a bare CR\r.\rend\r\n\
.leading dot\r\n\
last line\r\n";

/// What the mailbox host must store after our `Received:` line: the same lines, CRLF only.
const EXPECTED: &[u8] = b"Delivered-To: alice@example.org\r\n\
From: mallory@remote.test\r\n\
To: alice@example.org\r\n\
Subject: bare line ends\r\n\
Message-ID: <bare-line-ends@remote.test>\r\n\
\r\n\
first line\r\n\
.\r\n\
MAIL FROM:<mallory@remote.test>\r\n\
RCPT TO:<bob@example.org>\r\n\
DATA\r\n\
Subject: smuggled\r\n\
\r\n\
smuggled body\r\n\
.\r\n\
an old Mac line\r\nand a bare CR\r\n.\r\nend\r\n\
.leading dot\r\n\
last line\r\n";

fn write_configuration(directory: &Path, ca: &TestCa) {
    write_secrets(directory);
    let mut text = provider_configuration(&ca.ca_certificate, &["alice@example.org", "bob@example.org"], "");
    text.push_str(&format!(
        "\n[backup_mx]\nhost = \"{POP_NAME}\"\nport = 110\ntls = \"starttls\"\nuser_name = \"{POP_USER}\"\npoll_interval_seconds = 3600\npassword_file = \"secrets/pop3.password\"\nca_certificate = \"{}\"\n",
        ca.ca_certificate.display()
    ));
    std::fs::write(directory.join("homemx.toml"), text).unwrap();
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Offsets of CR not followed by LF and LF not preceded by CR.
fn bare_line_ends(bytes: &[u8]) -> Vec<usize> {
    (0..bytes.len())
        .filter(|&index| match bytes[index] {
            b'\r' => bytes.get(index + 1) != Some(&b'\n'),
            b'\n' => index == 0 || bytes[index - 1] != b'\r',
            _ => false,
        })
        .collect()
}

#[test]
fn fetched_mail_with_bare_line_ends_reaches_the_mailbox_host_as_crlf_and_smuggles_nothing() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("backup-mx-line-ends").unwrap();
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
    let mailbox = MailboxHost::start_lenient(&namespace, "192.168.77.1:24", "lmtp", &directory.join("mailbox")).expect("mailbox host");
    let pop3 = Pop3Server::start(
        ns,
        &format!("{POP_SERVER}:110"),
        Pop3Tls::StartTls,
        ca.leaf(POP_NAME).unwrap(),
        POP_USER,
        POP3_PASSWORD,
        &directory.join("pop3"),
    )
    .expect("POP3 server");
    pop3.deliver("bare-line-ends", SERVED).unwrap();

    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let config = MachineConfig::on_network(elf, flash, &network);
    let machine = Machine::start(&config, &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    let owner = Owner::at(&directory);
    owner.provision();
    machine.log.wait_for(0, "time: clock set", Duration::from_secs(60)).expect("the clock is set");
    assert!(owner.homemx(&["fetch-now"]).status.success());

    // Fetched over TLS, committed, deleted at the backup MX.
    wait_for("the message to leave the backup MX", Duration::from_secs(90), || pop3.remaining().is_empty());
    let logins = pop3.events_named("login");
    assert!(!logins.is_empty() && logins.iter().all(|event| event["ok"] == true), "{logins:?}");
    assert!(pop3.events_named("cleartext").iter().all(|event| !event["line"].as_str().unwrap_or("").starts_with("PASS")));
    assert_eq!(pop3.events_named("retr").len(), 1);

    // Delivered to the LAN mailbox host: wait for it, then a while longer for anything smuggled.
    mailbox.wait_for_messages(1, Duration::from_secs(60)).expect("the message reaches the mailbox host");
    std::thread::sleep(Duration::from_secs(5));
    let messages = mailbox.messages();
    let envelopes: Vec<_> = messages.iter().map(|(_, envelope)| envelope.clone()).collect();
    assert_eq!(messages.len(), 1, "one message, nothing smuggled in: {envelopes:?}");
    let (body, envelope) = &messages[0];
    assert_eq!(envelope["rcpt_tos"], json!(["alice@example.org"]));
    assert_eq!(envelope["bare_line_ends"], 0, "the appliance sent CRLF line ends only: {envelope}");
    assert!(bare_line_ends(body).is_empty(), "bare line ends at {:?} in {:?}", bare_line_ends(body), String::from_utf8_lossy(body));
    assert!(body.starts_with(b"Received: from pop.example.net"), "our Received: line first");
    assert!(body.ends_with(EXPECTED), "every line intact:\n{}", String::from_utf8_lossy(body));
    drop(machine);
}
