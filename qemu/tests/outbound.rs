//! Outbound mail end to end on the isolated network: a LAN client submits on port 587, the
//! appliance sends only through the provider's smarthost (a real SMTP server, aiosmtpd with
//! TLS 1.3 and AUTH, certificates from a throw-away CA), found by DNS (a real authoritative
//! server) and with its clock from SNTP. Every way TLS can fail — no STARTTLS, STARTTLS
//! stripped by a middlebox, a self-signed certificate, the wrong host name — keeps the
//! message queued with nothing sent in clear and raises the alert; once the smarthost is
//! fixed the message arrives exactly once, byte-exact, over TLS 1.3 after AUTH. A 4xx after
//! DATA followed by a power cut still gives exactly one copy. WAN clients get no relay, and a
//! LAN client over its hourly quota gets a clear 450.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::flash_image;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT, ROUTER, WAN_CLIENT};
use homemx_qemu::owner::{provider_configuration, write_secrets, Owner, SMARTHOST_PASSWORD};
use homemx_qemu::peers::{send_mail, MailboxHost};
use homemx_qemu::provider::{
    add_wan_address, DnsServer, Smarthost, SmarthostConfig, SntpConfig, SntpServer, StripMode, StripProxy, TestCa, TlsMode,
    SELF_SIGNED_SMARTHOST, SMARTHOST_NAME, WRONG_NAME,
};
use serde_json::{json, Value};

/// The smarthost's public address (what DNS says); the real server behind the proxy.
const SMARTHOST_FRONT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 25);
const SMARTHOST_BACK: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 26);
const SMARTHOST_USER: &str = "homemx@example.org";

const MESSAGE: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: Carol <carol@remote.example>\r\n\
Subject: outbound through the smarthost\r\n\
Message-ID: <outbound-1@example.org>\r\n\
\r\n\
Hello Carol,\r\n\
.a line with a leading dot\r\n\
\r\n\
Alice\r\n";

fn code(reply: &Value) -> u64 {
    reply[0].as_u64().unwrap_or(0)
}

fn write_configuration(directory: &Path, ca: &TestCa) {
    write_secrets(directory);
    let mut text = provider_configuration(&ca.ca_certificate, &["alice@example.org", "bob@example.org"], "time_servers = [\"ntp.example.net\"]\n");
    text.push_str("\n[limits]\nmax_message_bytes = 1048576\nmax_recipients = 20\nmessages_per_client_per_hour = 4\nspool_reserve_bytes = 65536\n");
    std::fs::write(directory.join("homemx.toml"), text).unwrap();
}

fn write_zone(path: &Path) {
    let zone = json!({
        "ttl": 60,
        "names": {
            SMARTHOST_NAME: {"A": [SMARTHOST_FRONT.to_string()]},
            "ntp.example.net": {"A": [ROUTER.to_string()]},
        }
    });
    std::fs::write(path, serde_json::to_vec_pretty(&zone).unwrap()).unwrap();
}

/// Waits for a log line containing `needle` after line `from`; returns the next line number.
fn wait_log(machine: &Machine, from: usize, needle: &str, timeout: Duration) -> usize {
    machine.log.wait_for(from, needle, timeout).unwrap_or_else(|error| panic!("log line {needle:?}: {error}"));
    let lines = machine.log.lines();
    from + lines[from..].iter().position(|line| line.contains(needle)).expect("the line is there") + 1
}

/// The active alert of `kind` in `homemx status --json`'s status.
fn alert<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["alerts"].as_array().and_then(|alerts| alerts.iter().find(|alert| alert["kind"] == kind))
}

fn no_mail_in_clear(what: &str, lines: &[String]) {
    for line in lines {
        let upper = line.to_ascii_uppercase();
        assert!(
            !upper.starts_with("MAIL FROM") && !upper.starts_with("AUTH") && !upper.starts_with("RCPT") && !upper.contains("CAROL"),
            "{what}: {line:?} was sent in clear"
        );
    }
}

#[test]
fn outbound_goes_only_through_a_verified_tls_smarthost_and_arrives_once() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("outbound").unwrap();
    let ca = TestCa::create(&directory.join("ca")).expect("test CA");
    write_configuration(&directory, &ca);
    std::fs::write(directory.join("message.eml"), MESSAGE).unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let ns = Some(namespace.as_str());
    add_wan_address(&namespace, SMARTHOST_FRONT).unwrap();
    add_wan_address(&namespace, SMARTHOST_BACK).unwrap();
    let zone = directory.join("zone.json");
    write_zone(&zone);
    let _dns = DnsServer::start(ns, &["192.168.77.1:53"], &zone, &directory.join("dns")).expect("DNS server");
    let _sntp = SntpServer::start(ns, &SntpConfig::new("192.168.77.1:123"), &directory.join("sntp")).expect("SNTP server");
    let mailbox = MailboxHost::start(&namespace, "192.168.77.1:24", "lmtp", &directory.join("mailbox")).expect("mailbox host");
    let front = format!("{SMARTHOST_FRONT}:587");
    let leaf = ca.leaf(SMARTHOST_NAME).unwrap().clone();
    let good_smarthost = |listen: &str, label: &str| {
        let config = SmarthostConfig::new(listen, TlsMode::StartTls).with_certificate(&leaf).with_auth(SMARTHOST_USER, SMARTHOST_PASSWORD);
        Smarthost::start(ns, &config, &directory.join(label)).expect("smarthost")
    };

    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let config = MachineConfig::on_network(elf.clone(), flash.clone(), &network);
    let mut machine = Machine::start(&config, &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    let owner = Owner::at(&directory);
    owner.provision();
    let mut line = wait_log(&machine, 0, "time: clock set from", Duration::from_secs(60));

    let submit = |source: Ipv4Addr, port: u16, recipients: &[&str]| {
        send_mail(&namespace, source, format!("{APPLIANCE}:{port}"), "alice@example.org", recipients, &directory.join("message.eml"), false)
            .expect("smtp client runs")
    };

    // 1. A smarthost without STARTTLS: queued, nothing in clear, alert.
    let mut plain = Smarthost::start(ns, &SmarthostConfig::new(front.clone(), TlsMode::None).with_auth(SMARTHOST_USER, SMARTHOST_PASSWORD), &directory.join("plain"))
        .expect("plain smarthost");
    let reply = submit(LAN_CLIENT, 587, &["carol@remote.example"]);
    assert_eq!(code(&reply["data"]), 250, "LAN submission accepted: {reply}");
    line = wait_log(&machine, line, "ALERT stripping_suspected", Duration::from_secs(60));
    wait_log(&machine, line, "deferred, next try", Duration::from_secs(30));
    // The owner is told: `homemx status` shows the deferred message and the alert, since when.
    let status = owner.status();
    assert_eq!(status["deferred"], 1, "the stuck message is counted: {status}");
    let stripping = alert(&status, "stripping_suspected").unwrap_or_else(|| panic!("the alert is shown: {status}"));
    assert!(stripping["first_seen_unix"].as_u64().is_some_and(|unix| unix > 1_700_000_000), "{stripping}");
    assert_eq!(stripping["needs_acknowledgement"], false, "{stripping}");
    let human = String::from_utf8(owner.homemx(&["status"]).stdout).unwrap();
    assert!(human.contains("1 deferred") && human.contains("stripping_suspected since"), "{human}");
    // The log keeps the whole alert sentence (split between words, never cut off).
    let logged = owner.logged_lines("ALERT stripping_suspected").into_iter().next().expect("the alert is in the log");
    assert!(logged.ends_with("nothing was sent in clear (possible STARTTLS stripping)"), "{logged}");
    no_mail_in_clear("no STARTTLS", &plain.cleartext_lines());
    assert!(plain.messages().is_empty());
    plain.stop();

    // 2. STARTTLS stripped by a middlebox (XXXXXXXA): queued, nothing in clear, alert.
    let mut back = good_smarthost(&format!("{SMARTHOST_BACK}:587"), "back");
    let mut proxy = StripProxy::start(ns, &front, &format!("{SMARTHOST_BACK}:587"), StripMode::Strip, &directory.join("proxy")).expect("proxy");
    assert!(owner.homemx(&["flush"]).status.success());
    line = wait_log(&machine, line, "STARTTLS was overwritten", Duration::from_secs(60));
    let client_bytes = String::from_utf8_lossy(&proxy.client_bytes()).to_string();
    no_mail_in_clear("stripped", &client_bytes.lines().map(str::to_string).collect::<Vec<_>>());
    assert!(back.messages().is_empty());
    proxy.stop();
    back.stop();

    // 3. A self-signed certificate, 4. a certificate for another name: handshake refused.
    for (label, certificate_name) in [("selfsigned", SELF_SIGNED_SMARTHOST), ("wrongname", WRONG_NAME)] {
        let wrong = ca.leaf(certificate_name).unwrap().clone();
        let config = SmarthostConfig::new(front.clone(), TlsMode::StartTls).with_certificate(&wrong).with_auth(SMARTHOST_USER, SMARTHOST_PASSWORD);
        let mut impostor = Smarthost::start(ns, &config, &directory.join(label)).expect("impostor smarthost");
        assert!(owner.homemx(&["flush"]).status.success());
        line = wait_log(&machine, line, "ALERT certificate_rejected", Duration::from_secs(60));
        no_mail_in_clear(label, &impostor.cleartext_lines());
        assert!(impostor.events_named("auth").is_empty(), "{label}: no AUTH");
        assert!(impostor.messages().is_empty(), "{label}: nothing delivered");
        impostor.stop();
    }
    let status = owner.status();
    assert!(alert(&status, "stripping_suspected").is_some() && alert(&status, "certificate_rejected").is_some(), "{status}");
    // The alert mailer (a job of the courier) persists the alerts, then mails the new ones to postmaster: once the
    // certificate alert's mail is there, both alerts are on flash and survive the power cut.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !mailbox.messages().iter().any(|(body, envelope)| {
        envelope["rcpt_tos"] == json!(["postmaster@example.org"]) && String::from_utf8_lossy(body).contains("NEW: TLS certificate rejected")
    }) {
        assert!(std::time::Instant::now() < deadline, "no alert mail about the certificate at postmaster");
        std::thread::sleep(Duration::from_millis(500));
    }

    // 5. The smarthost answers 451 after DATA, then the power fails: after the restart the
    //    message is delivered exactly once.
    let config = SmarthostConfig::new(front.clone(), TlsMode::StartTls)
        .with_certificate(&leaf)
        .with_auth(SMARTHOST_USER, SMARTHOST_PASSWORD)
        .with_fail_data(451, 1);
    let mut flaky = Smarthost::start(ns, &config, &directory.join("flaky")).expect("flaky smarthost");
    assert!(owner.homemx(&["flush"]).status.success());
    flaky.wait_for_event(Duration::from_secs(60), |event| event["event"] == "data_failed").expect("the 451 was given");
    machine.kill();
    flaky.stop();
    let good = good_smarthost(&front, "good");
    let machine = Machine::start(&config_for(&elf, &flash, &network), &directory).expect("QEMU restarts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up again");
    assert!(owner.homemx(&["unlock", "--passphrase-file", "passphrase"]).status.success());
    for kind in ["stripping_suspected", "certificate_rejected"] {
        let restored = format!("alert {kind} was in force before the restart");
        machine.log.wait_for(0, &restored, Duration::from_secs(30)).expect("the alert survived the power cut");
    }
    let messages = good.wait_for_messages(1, Duration::from_secs(90)).expect("delivered once the smarthost is fixed");
    // A verified delivery to that smarthost disproves stripping and a bad certificate: the
    // alerts end by themselves, and nothing is deferred any more.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = owner.status();
        if alert(&status, "stripping_suspected").is_none() && alert(&status, "certificate_rejected").is_none() && status["deferred"] == 0 {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the alerts end after the verified delivery: {status}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(status["spool_messages"], 0, "{status}");
    machine.log.wait_for(0, "alert stripping_suspected ended: a verified connection to the smarthost succeeded", Duration::from_secs(5)).expect("logged");
    std::thread::sleep(Duration::from_secs(5));
    assert!(owner.homemx(&["flush"]).status.success());
    std::thread::sleep(Duration::from_secs(10));
    let messages_later = good.messages();
    assert_eq!(messages_later.len(), 1, "exactly one copy: {messages_later:?}");
    let (body, sidecar) = &messages[0];
    assert_eq!(sidecar["mail_from"], "alice@example.org", "{sidecar}");
    assert_eq!(sidecar["rcpt_tos"], json!(["carol@remote.example"]), "{sidecar}");
    assert_eq!(sidecar["tls_version"], "TLSv1.3", "{sidecar}");
    assert_eq!(sidecar["auth_user"], SMARTHOST_USER, "{sidecar}");
    assert!(body.starts_with(b"Received: from "), "our Received: header comes first");
    let header_end = body
        .windows(2)
        .enumerate()
        .position(|(index, pair)| pair == b"\r\n" && body.get(index + 2).is_some_and(|&next| next != b'\t' && next != b' '))
        .unwrap()
        + 2;
    assert_eq!(&body[header_end..], MESSAGE, "byte-exact but for the Received: header");
    no_mail_in_clear("good", &good.cleartext_lines());
    eprintln!(
        "smarthost handshake: {}",
        machine.log.lines().iter().find(|line| line.contains("tls: TLSv1.3 (")).cloned().unwrap_or_default()
    );

    // 6. A permanent refusal from the smarthost: a non-delivery report goes to the local
    //    sender (from <>), once, and the NDN alert is raised.
    drop(good);
    let config = SmarthostConfig::new(front.clone(), TlsMode::StartTls)
        .with_certificate(&leaf)
        .with_auth(SMARTHOST_USER, SMARTHOST_PASSWORD)
        .with_fail_data(550, 1);
    let _refusing = Smarthost::start(ns, &config, &directory.join("refusing")).expect("refusing smarthost");
    let reply = submit(LAN_CLIENT, 587, &["dave@remote.example"]);
    assert_eq!(code(&reply["data"]), 250, "{reply}");
    machine.log.wait_for(0, "ALERT ndn_generated", Duration::from_secs(60)).expect("the NDN is alerted");
    // An event alert needs the owner: shown as such, refused for a condition kind, and gone
    // after `homemx alert ack`.
    let status = owner.status();
    let ndn = alert(&status, "ndn_generated").unwrap_or_else(|| panic!("the NDN alert is shown: {status}"));
    assert_eq!(ndn["needs_acknowledgement"], true, "{ndn}");
    assert_eq!(owner.homemx(&["alert", "ack", "certificate_rejected"]).status.code(), Some(7), "a condition alert is not acknowledged");
    let acknowledged = owner.homemx(&["alert", "ack", "ndn_generated"]);
    assert!(acknowledged.status.success(), "{}", String::from_utf8_lossy(&acknowledged.stderr));
    let status = owner.status();
    assert!(alert(&status, "ndn_generated").is_none(), "acknowledged: {status}");
    machine.log.wait_for(0, "alert ndn_generated acknowledged by the owner", Duration::from_secs(5)).expect("logged");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let ndn = loop {
        if let Some(found) = mailbox.messages().into_iter().find(|(_, envelope)| envelope["rcpt_tos"] == json!(["alice@example.org"])) {
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "no NDN reached the local sender");
        std::thread::sleep(Duration::from_millis(300));
    };
    let ndn_text = String::from_utf8_lossy(&ndn.0).to_string();
    assert!(matches!(ndn.1["mail_from"].as_str(), Some("") | Some("<>")), "NDNs have the null sender: {}", ndn.1);
    assert!(ndn_text.contains("MAILER-DAEMON@example.org") && ndn_text.contains("<dave@remote.example>: 550"), "{ndn_text}");

    // 7. No relay for the world: 587 closed to WAN clients, port 25 refuses foreign domains.
    let reply = submit(WAN_CLIENT, 587, &["victim@remote.example"]);
    assert_eq!(code(&reply["connect"]), 554, "WAN submission refused: {reply}");
    let reply = submit(WAN_CLIENT, 25, &["victim@remote.example"]);
    assert_eq!(code(&reply["rcpt"]["victim@remote.example"]), 550, "WAN relay refused: {reply}");

    // 8. The LAN client's hourly quota (4): one message was sent in this boot, three more
    //    pass, the next is refused.
    let mut codes = Vec::new();
    for _ in 0..5 {
        let reply = submit(LAN_CLIENT, 587, &["bob@example.org"]);
        codes.push(code(&reply["mail"]));
        if code(&reply["mail"]) == 450 {
            assert!(reply.to_string().contains("quota"), "a clear reply: {reply}");
            break;
        }
    }
    assert_eq!(codes, vec![250, 250, 250, 450], "four per hour, then 450");
    machine.log.wait_for(0, "QuotaExceeded", Duration::from_secs(10)).expect("the refusal is logged");

    // 9. A provider on an older stack (TLS 1.2 only): by default (`min_tls` 1.2) the message
    //    goes over TLS 1.2 with ECDHE and an AEAD; with `min_tls = "1.3"` no handshake
    //    completes (this Python server closes without an alert when no version is common),
    //    nothing is sent and the message waits. (From another LAN address: the first one's
    //    hourly quota is used up.)
    drop(_refusing);
    let second_client = Ipv4Addr::new(192, 168, 77, 31);
    network.add_client_address(second_client).expect("a second LAN client");
    let older = SmarthostConfig::new(front.clone(), TlsMode::StartTls).with_certificate(&leaf).with_auth(SMARTHOST_USER, SMARTHOST_PASSWORD).with_tls12_only();
    let mut older_smarthost = Smarthost::start(ns, &older, &directory.join("tls12")).expect("TLS 1.2 smarthost");
    let reply = submit(second_client, 587, &["erin@remote.example"]);
    assert_eq!(code(&reply["data"]), 250, "{reply}");
    let delivered = older_smarthost.wait_for_messages(1, Duration::from_secs(90)).expect("delivered over TLS 1.2 by default");
    assert_eq!(delivered[0].1["tls_version"], "TLSv1.2", "{}", delivered[0].1);
    let cipher = delivered[0].1["cipher"].as_str().unwrap_or_default().to_string();
    assert!(cipher.starts_with("ECDHE-") && (cipher.contains("GCM") || cipher.contains("CHACHA20")), "ECDHE with an AEAD: {cipher}");
    let text = std::fs::read_to_string(directory.join("homemx.toml")).unwrap().replacen("tls = \"starttls\"\n", "tls = \"starttls\"\nmin_tls = \"1.3\"\n", 1);
    std::fs::write(directory.join("homemx.toml"), text).unwrap();
    let set = owner.homemx(&["config", "set", "--config", "homemx.toml"]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let line = machine.log.line_count();
    let reply = submit(second_client, 587, &["frank@remote.example"]);
    assert_eq!(code(&reply["data"]), 250, "{reply}");
    wait_log(&machine, line, "deferred, next try", Duration::from_secs(60));
    assert_eq!(older_smarthost.messages().len(), 1, "nothing more went to a TLS 1.2 server with min_tls 1.3");
    assert_eq!(owner.status()["deferred"], 1, "the message waits");
    assert!(older_smarthost.events_named("auth").len() <= 1, "no AUTH after the refused handshake");
    older_smarthost.stop();
}

fn config_for(elf: &Path, flash: &Path, network: &IsolatedNetwork) -> MachineConfig {
    MachineConfig::on_network(elf.to_path_buf(), flash.to_path_buf(), network)
}
