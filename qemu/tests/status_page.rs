//! The status page end to end: a LAN client gets `/` and `/status.json` with strict headers;
//! a WAN client gets 403 and a wrong `Host:` 421; headless Chromium renders the page (the
//! screenshot is kept as a CI artifact in qemu/run/artifacts/); and an induced event — a
//! smarthost that offers no STARTTLS, as a stripping middlebox would make it look — shows as
//! an alert on the page and in the JSON, and arrives as a mail at postmaster@.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::flash_image;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT, ROUTER, WAN_CLIENT};
use homemx_qemu::owner::{provider_configuration, write_secrets, Owner};
use homemx_qemu::peers::{send_mail, MailboxHost};
use homemx_qemu::status_page::{get, screenshot};
use homemx_qemu::provider::{add_wan_address, DnsServer, Smarthost, SmarthostConfig, SntpConfig, SntpServer, TestCa, TlsMode, SMARTHOST_NAME};
use serde_json::{json, Value};

const SMARTHOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 25);

fn write_configuration(directory: &Path, ca: &TestCa) {
    write_secrets(directory);
    std::fs::write(directory.join("homemx.toml"), provider_configuration(&ca.ca_certificate, &["alice@example.org"], "")).unwrap();
}

#[test]
fn lan_sees_the_status_page_wan_does_not_and_alerts_reach_the_page_and_postmaster() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("status-page").unwrap();
    let ca = TestCa::create(&directory.join("ca")).expect("test CA");
    write_configuration(&directory, &ca);
    std::fs::write(directory.join("message.eml"), b"Subject: out\r\n\r\nhello\r\n").unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let ns = Some(namespace.as_str());
    add_wan_address(&namespace, SMARTHOST).unwrap();
    let zone = directory.join("zone.json");
    std::fs::write(&zone, serde_json::to_vec(&json!({"ttl": 60, "names": {SMARTHOST_NAME: {"A": [SMARTHOST.to_string()]}}})).unwrap()).unwrap();
    let _dns = DnsServer::start(ns, &["192.168.77.1:53"], &zone, &directory.join("dns")).expect("DNS server");
    let _sntp = SntpServer::start(ns, &SntpConfig::new(format!("{ROUTER}:123")), &directory.join("sntp")).expect("SNTP server");
    let mailbox = MailboxHost::start(&namespace, "192.168.77.1:24", "lmtp", &directory.join("mailbox")).expect("mailbox host");
    let stripped = Smarthost::start(ns, &SmarthostConfig::new(format!("{SMARTHOST}:587"), TlsMode::None), &directory.join("smarthost"))
        .expect("smarthost without STARTTLS");

    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let machine = Machine::start(&MachineConfig::on_network(elf, flash, &network), &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");

    // Before provisioning: the page answers and says so.
    let page = get(&network, LAN_CLIENT, "192.168.77.2", "/");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("<html"), "an HTML page");
    let status: Value = serde_json::from_str(&get(&network, LAN_CLIENT, "192.168.77.2", "/status.json").body).expect("JSON");
    assert_eq!(status["lock"], "unprovisioned", "{status}");

    // Strict headers, LAN only, own host name only.
    let headers = page.headers.to_ascii_lowercase();
    assert!(headers.contains("content-security-policy: default-src 'none'"), "{headers}");
    assert!(headers.contains("x-frame-options: deny") && headers.contains("cache-control: no-store"), "{headers}");
    assert!(!headers.contains("set-cookie"), "no cookies");
    assert!(!page.body.contains("<script") && !page.body.contains("http://") && !page.body.contains("https://"), "no scripts, no third-party resources");
    assert_eq!(get(&network, WAN_CLIENT, "192.168.77.2", "/").status, 403, "WAN clients get nothing");
    assert_eq!(get(&network, LAN_CLIENT, "evil.example", "/").status, 421, "DNS rebinding refused");
    assert_eq!(get(&network, LAN_CLIENT, "homemx.lan", "/status.json").status, 200, "the configured name works");

    // Provision; a LAN client sends mail out; the smarthost offers no STARTTLS.
    let owner = Owner::at(&directory);
    owner.provision();
    let reply = send_mail(&namespace, LAN_CLIENT, format!("{APPLIANCE}:587"), "alice@example.org", &["carol@remote.example"], &directory.join("message.eml"), false)
        .expect("smtp client runs");
    assert_eq!(reply["data"][0], 250, "{reply}");
    machine.log.wait_for(0, "ALERT stripping_suspected", Duration::from_secs(60)).expect("the alert is raised");

    // The alert is on the page and in the JSON.
    let status: Value = serde_json::from_str(&get(&network, LAN_CLIENT, "192.168.77.2", "/status.json").body).expect("JSON");
    assert_eq!(status["lock"], "unlocked", "{status}");
    let alerts = status["alerts"].to_string();
    assert!(alerts.contains("stripping_suspected"), "{status}");
    assert!(status["mail"]["queued"].as_u64().unwrap_or(0) >= 1, "{status}");
    let page = get(&network, LAN_CLIENT, "192.168.77.2", "/");
    assert!(page.body.to_ascii_lowercase().contains("starttls"), "the page names the alert");
    eprintln!("status page: {} bytes of HTML, {} bytes of JSON", page.body.len(), status.to_string().len());

    // The alert arrives as a mail to postmaster@.
    let deadline = Instant::now() + Duration::from_secs(90);
    let alert_mail = loop {
        let found = mailbox.messages().into_iter().find(|(_, envelope)| envelope["rcpt_tos"] == json!(["postmaster@example.org"]));
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no alert mail at postmaster");
        std::thread::sleep(Duration::from_millis(500));
    };
    let body = String::from_utf8_lossy(&alert_mail.0).to_ascii_lowercase();
    assert!(body.contains("stripping") || body.contains("starttls"), "{body}");
    assert!(matches!(alert_mail.1["mail_from"].as_str(), Some("") | Some("<>")), "the alert mail has the null sender: {}", alert_mail.1);

    // Headless Chromium renders it; the screenshot is the CI artifact.
    screenshot(&network, &directory, "status-page.png");

    // The alert is persisted (encrypted): after a power cut and unlock it is still shown,
    // though the smarthost is gone now and nothing raises it again.
    drop(stripped);
    drop(machine);
    let machine = Machine::start(&MachineConfig::on_network(FirmwareBuild::QEMU.build().unwrap(), directory.join("flash.img"), &network), &directory)
        .expect("QEMU restarts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up again");
    assert!(owner.homemx(&["unlock", "--passphrase-file", "passphrase"]).status.success());
    machine.log.wait_for(0, "alert stripping_suspected was in force before the restart", Duration::from_secs(30)).expect("restored");
    let status: Value = serde_json::from_str(&get(&network, LAN_CLIENT, "192.168.77.2", "/status.json").body).expect("JSON");
    assert!(status["alerts"].to_string().contains("stripping_suspected"), "the alert survives the restart: {status}");
}
