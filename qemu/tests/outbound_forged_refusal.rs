//! A forged permanent refusal before TLS, end to end: a man in the middle in front of the
//! smarthost answers the appliance's connection with a `554` greeting (plaintext, before any
//! TLS, so anyone on the path can send it). With TLS required that reply proves nothing about
//! the smarthost: the message stays queued (deferred), no non-delivery report goes to the
//! local sender, the stripping alert is raised, and once the path is clean the message goes
//! out through the real smarthost over TLS, once.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::flash_image;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT, ROUTER};
use homemx_qemu::owner::{provider_configuration, write_secrets, Owner, SMARTHOST_PASSWORD};
use homemx_qemu::peers::{send_mail, MailboxHost};
use homemx_qemu::provider::{
    add_wan_address, DnsServer, Smarthost, SmarthostConfig, SntpConfig, SntpServer, StripMode, StripProxy, TestCa, TlsMode, SMARTHOST_NAME,
};
use serde_json::json;

/// The smarthost's public address (what DNS says); the real server behind the middlebox.
const SMARTHOST_FRONT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 25);
const SMARTHOST_BACK: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 26);
const SMARTHOST_USER: &str = "homemx@example.org";

const MESSAGE: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: Carol <carol@remote.example>\r\n\
Subject: a forged 554 must not bounce this\r\n\
Message-ID: <forged-refusal@example.org>\r\n\
\r\n\
Hello Carol\r\n";

fn write_configuration(directory: &Path, ca: &TestCa) {
    write_secrets(directory);
    let text = provider_configuration(&ca.ca_certificate, &["alice@example.org", "bob@example.org"], "time_servers = [\"ntp.example.net\"]\n");
    std::fs::write(directory.join("homemx.toml"), text).unwrap();
}

#[test]
fn a_forged_554_before_tls_defers_without_a_non_delivery_report() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("outbound-forged-refusal").unwrap();
    let ca = TestCa::create(&directory.join("ca")).expect("test CA");
    write_configuration(&directory, &ca);
    std::fs::write(directory.join("message.eml"), MESSAGE).unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let ns = Some(namespace.as_str());
    add_wan_address(&namespace, SMARTHOST_FRONT).unwrap();
    add_wan_address(&namespace, SMARTHOST_BACK).unwrap();
    let zone = directory.join("zone.json");
    let names = json!({"ttl": 60, "names": {SMARTHOST_NAME: {"A": [SMARTHOST_FRONT.to_string()]}, "ntp.example.net": {"A": [ROUTER.to_string()]}}});
    std::fs::write(&zone, serde_json::to_vec_pretty(&names).unwrap()).unwrap();
    let _dns = DnsServer::start(ns, &["192.168.77.1:53"], &zone, &directory.join("dns")).expect("DNS server");
    let _sntp = SntpServer::start(ns, &SntpConfig::new("192.168.77.1:123"), &directory.join("sntp")).expect("SNTP server");
    let mailbox = MailboxHost::start(&namespace, "192.168.77.1:24", "lmtp", &directory.join("mailbox")).expect("mailbox host");
    let front = format!("{SMARTHOST_FRONT}:587");
    let leaf = ca.leaf(SMARTHOST_NAME).unwrap().clone();
    let smarthost_config = |listen: &str| SmarthostConfig::new(listen, TlsMode::StartTls).with_certificate(&leaf).with_auth(SMARTHOST_USER, SMARTHOST_PASSWORD);
    let mut back = Smarthost::start(ns, &smarthost_config(&format!("{SMARTHOST_BACK}:587")), &directory.join("back")).expect("smarthost");
    let mut proxy =
        StripProxy::start(ns, &front, &format!("{SMARTHOST_BACK}:587"), StripMode::RefuseGreeting, &directory.join("proxy")).expect("middlebox");

    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let config = MachineConfig::on_network(elf, flash, &network);
    let machine = Machine::start(&config, &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    let owner = Owner::at(&directory);
    owner.provision();
    machine.log.wait_for(0, "time: clock set from", Duration::from_secs(60)).expect("the clock is set");

    let reply = send_mail(&namespace, LAN_CLIENT, format!("{APPLIANCE}:587"), "alice@example.org", &["carol@remote.example"], &directory.join("message.eml"), false)
        .expect("smtp client runs");
    assert_eq!(reply["data"][0], 250, "LAN submission accepted: {reply}");

    // The middlebox forges the 554; the appliance answers QUIT and nothing else in clear.
    proxy.wait_for_event(Duration::from_secs(60), |event| event["event"] == "close").expect("the appliance came and went");
    std::thread::sleep(Duration::from_secs(5));
    let commands: Vec<String> = proxy.events_named("client_command").iter().filter_map(|event| event["line"].as_str().map(str::to_string)).collect();
    assert_eq!(commands, ["QUIT\r\n"], "only QUIT after the forged greeting");
    let log = machine.log.lines().join("\n");
    assert!(!log.contains("for good") && !log.contains("ndn_generated"), "a forged refusal bounced the message:\n{log}");
    // The mailbox host may also hold the owner's alert mail (to postmaster, about the suspected
    // stripping): that one is wanted. Nothing may go back to the message's sender.
    let to_sender = |mailbox: &MailboxHost| -> Vec<serde_json::Value> {
        mailbox.messages().into_iter().map(|(_, sidecar)| sidecar).filter(|sidecar| sidecar["rcpt_tos"] != json!(["postmaster@example.org"])).collect()
    };
    assert!(to_sender(&mailbox).is_empty(), "no non-delivery report reached the local sender: {:?}", to_sender(&mailbox));
    machine.log.wait_for(0, "deferred, next try", Duration::from_secs(10)).expect("the message stays queued");
    machine.log.wait_for(0, "ALERT stripping_suspected", Duration::from_secs(10)).expect("the owner is alerted");
    machine.log.wait_for(0, "refused us before TLS", Duration::from_secs(10)).expect("the alert says why");

    // The path is clean again: the queued message goes out through the real smarthost, once.
    proxy.stop();
    back.stop();
    let good = Smarthost::start(ns, &smarthost_config(&front), &directory.join("good")).expect("smarthost");
    assert!(owner.homemx(&["flush"]).status.success());
    let messages = good.wait_for_messages(1, Duration::from_secs(90)).expect("delivered once the path is clean");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(good.messages().len(), 1, "exactly one copy");
    let (body, sidecar) = &messages[0];
    assert_eq!(sidecar["rcpt_tos"], json!(["carol@remote.example"]), "{sidecar}");
    assert_eq!(sidecar["tls_version"], "TLSv1.3", "{sidecar}");
    assert!(body.ends_with(MESSAGE));
    assert!(to_sender(&mailbox).is_empty(), "still no non-delivery report: {:?}", to_sender(&mailbox));
    drop(machine);
}
