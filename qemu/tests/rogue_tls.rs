//! The TLS client authenticates its peer, end to end (issue 12, finding 1): a rogue TLS 1.3
//! server (`qemu/peers/rogue_tls_server.py`) that completes the handshake with ServerHello,
//! EncryptedExtensions and Finished but sends no Certificate and no CertificateVerify stands in
//! for every provider service the appliance logs in to, found by plain DNS as an attacker on
//! the path would arrange it: (a) the smarthost with STARTTLS and (b) with implicit TLS,
//! (c) the backup MX's POP3 with STLS and (d) with implicit TLS, (e) the DynDNS update
//! endpoint and (f) a check-IP source over HTTPS. Each in both trust modes, CA anchor and
//! pinned key (one boot per mode; the smarthost and POP3 switch from STARTTLS/STLS to implicit
//! TLS with `homemx config set`).
//!
//! Required for each: the rogue's certificate-less flight reaches the appliance, which never
//! completes the handshake (no client Finished) and sends not one byte after the TLS switch (no
//! AUTH, USER/PASS, MAIL or HTTP request line; the rogue logs every decrypted byte before it
//! answers); the `certificate_rejected` alert is raised for that service (log and
//! `/status.json`); the outbound message stays queued, deferred and not bounced.
//!
//! Two genuine check-IP services (TLS 1.3 with the test CA's certificates, or the pinned
//! key's) agree on the public address, so an update is due and the rogue update endpoint is
//! really tried. Every failure of every case is collected and reported together.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::flash_image;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT, ROUTER};
use homemx_qemu::owner::{provider_configuration, write_secrets, Owner, DYNDNS_PASSWORD, POP3_PASSWORD, SMARTHOST_PASSWORD};
use homemx_qemu::peers::{http_get, send_mail, MailboxHost};
use homemx_qemu::provider::{
    add_wan_address, write_json_atomically, DnsServer, HttpsConfig, HttpsEndpoints, RogueMode, RogueTlsServer, SntpConfig, SntpServer, TestCa,
    CHECKIP_NAME, DYNDNS_NAME, POP_NAME, SMARTHOST_NAME,
};
use serde_json::{json, Value};

const SMARTHOST_ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 25);
const POP_ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 110);
const DYNDNS_ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 60);
const CHECKIP_ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 61);
/// Two genuine check-IP services (they agree, so an update is due).
const GENUINE_CHECKIP: [(&str, Ipv4Addr); 2] =
    [("ip1.example.net", Ipv4Addr::new(203, 0, 113, 62)), ("ip2.example.net", Ipv4Addr::new(203, 0, 113, 63))];
const HOST: &str = "home.example.net";
const PUBLIC_ADDRESS: &str = "198.51.100.7";
/// How long one service may take to meet its rogue and finish with it.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(90);

const MESSAGE: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: Carol <carol@remote.example>\r\n\
Subject: for the smarthost only\r\n\
\r\n\
This must never reach a server that showed no certificate.\r\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trust {
    CaAnchor,
    PinnedKey,
}

impl Trust {
    fn label(self) -> &'static str {
        match self {
            Trust::CaAnchor => "CA anchor",
            Trust::PinnedKey => "pinned key",
        }
    }

    /// The trust-anchor line of a provider section: the test CA, or the genuine server's
    /// certificate (whose key the rogue does not have) to pin.
    fn anchor_line(self, ca: &TestCa, genuine_name: &str) -> String {
        match self {
            Trust::CaAnchor => format!("ca_certificate = \"{}\"", ca.ca_certificate.display()),
            Trust::PinnedKey => format!("pin_certificate = \"{}\"", ca.leaf(genuine_name).unwrap().certificate.display()),
        }
    }
}

/// `homemx.toml` for `trust` with the smarthost and POP3 on STARTTLS/STLS or implicit TLS.
fn configuration(ca: &TestCa, trust: Trust, implicit: bool) -> String {
    let mut text = provider_configuration(&ca.ca_certificate, &["alice@example.org"], "");
    text = text.replace(&format!("ca_certificate = \"{}\"", ca.ca_certificate.display()), &trust.anchor_line(ca, SMARTHOST_NAME));
    if implicit {
        text = text.replace("port = 587\ntls = \"starttls\"", "port = 465\ntls = \"implicit\"");
    }
    let (pop_port, pop_tls) = if implicit { (995, "implicit") } else { (110, "starttls") };
    text.push_str(&format!(
        "\n[backup_mx]\nhost = \"{POP_NAME}\"\nport = {pop_port}\ntls = \"{pop_tls}\"\nuser_name = \"backup-mx@example.org\"\npoll_interval_seconds = 3600\npassword_file = \"secrets/pop3.password\"\n{}\n",
        trust.anchor_line(ca, POP_NAME)
    ));
    let check_ip: Vec<String> =
        [CHECKIP_NAME, GENUINE_CHECKIP[0].0, GENUINE_CHECKIP[1].0].iter().map(|name| format!("\"https://{name}/ip\"")).collect();
    text.push_str(&format!(
        "\n[dyndns]\nserver = \"{DYNDNS_NAME}\"\nhost_name = \"{HOST}\"\nuser_name = \"homemx-owner\"\ncheck_interval_seconds = 3600\npassword_file = \"secrets/dyndns.password\"\n{}\ncheck_ip = [{}]\n",
        trust.anchor_line(ca, DYNDNS_NAME),
        check_ip.join(", ")
    ));
    text
}

fn zone() -> Value {
    let mut names = json!({
        SMARTHOST_NAME: {"A": [SMARTHOST_ADDRESS.to_string()]},
        POP_NAME: {"A": [POP_ADDRESS.to_string()]},
        DYNDNS_NAME: {"A": [DYNDNS_ADDRESS.to_string()]},
        CHECKIP_NAME: {"A": [CHECKIP_ADDRESS.to_string()]},
        HOST: {"A": ["198.51.100.1"]},
        "example.org": {"MX": [{"preference": 10, "exchange": HOST}]},
    });
    for (name, address) in GENUINE_CHECKIP {
        names[name] = json!({"A": [address.to_string()]});
    }
    json!({"ttl": 60, "names": names})
}

/// One rogue service: what it stands in for, the server, and the firmware log's words for
/// its alert.
struct Case {
    label: String,
    rogue: RogueTlsServer,
    alert_mentions: &'static str,
}

/// Waits until the rogue had at least one connection and every connection ended (and stayed
/// so for two seconds); false on timeout.
fn wait_until_done(rogue: &RogueTlsServer, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut quiet_since: Option<Instant> = None;
    while Instant::now() < deadline {
        let connects = rogue.events_named("connect").len();
        let done = connects > 0 && rogue.events_named("disconnect").len() == connects;
        match (done, quiet_since) {
            (true, Some(since)) if since.elapsed() >= Duration::from_secs(2) => return true,
            (true, None) => quiet_since = Some(Instant::now()),
            (false, _) => quiet_since = None,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Waits until the appliance met the rogue and left, then looks for the service's alert in the
/// firmware log from `from_line` on; failures go to `failures`.
fn wait_and_check_alert(case: &Case, machine: &Machine, from_line: usize, failures: &mut Vec<String>) {
    let label = &case.label;
    if !wait_until_done(&case.rogue, SERVICE_TIMEOUT) {
        failures.push(format!("{label}: the appliance never came to the rogue (or never left) within {SERVICE_TIMEOUT:?}"));
        return;
    }
    let alerted = machine.log.lines()[from_line..]
        .iter()
        .any(|line| line.contains("ALERT certificate_rejected") && line.to_lowercase().contains(case.alert_mentions));
    if !alerted {
        failures.push(format!("{label}: no \"ALERT certificate_rejected\" mentioning {:?} in the log", case.alert_mentions));
    }
}

/// What the rogue saw over the whole boot: its flight went out, no handshake completed, not
/// one byte came after the TLS switch; failures go to `failures`.
fn check_rogue_log(case: &Case, failures: &mut Vec<String>) {
    let label = &case.label;
    let rogue = &case.rogue;
    if rogue.server_finished_sent() == 0 {
        failures.push(format!("{label}: the rogue's certificate-less flight never went out: {:?}", rogue.events()));
    }
    if rogue.completed_handshakes() > 0 {
        failures.push(format!(
            "{label}: the appliance completed {} TLS handshake(s) with a server that sent no Certificate and no CertificateVerify",
            rogue.completed_handshakes()
        ));
    }
    let received = rogue.tls_bytes();
    if !received.is_empty() {
        let passwords: Vec<&str> = rogue.credentials().iter().filter_map(|credential| credential["password"].as_str()).map(password_name).collect();
        failures.push(format!(
            "{label}: the rogue received {} bytes after the TLS switch, passwords given away: {passwords:?}; lines: {:?}",
            received.len(),
            rogue.tls_commands()
        ));
    }
}

/// Which provisioned password `password` is (the report names it, never prints it).
fn password_name(password: &str) -> &'static str {
    match password {
        SMARTHOST_PASSWORD => "the smarthost password",
        POP3_PASSWORD => "the POP3 password",
        DYNDNS_PASSWORD => "the DynDNS password",
        _ => "another password",
    }
}

fn status_json(network: &IsolatedNetwork) -> Value {
    let target = SocketAddrV4::new(APPLIANCE, 80);
    match network.run_inside(move || http_get(LAN_CLIENT, target, "192.168.77.2", "/status.json")) {
        Ok(Ok(answer)) => serde_json::from_str(&answer.body).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// One boot in `trust` mode against the six rogue services; returns what failed.
fn run(elf: &Path, ca: &TestCa, trust: Trust) -> Vec<String> {
    let mode = trust.label();
    let directory: PathBuf = new_run_directory(&format!("rogue-tls-{}", if trust == Trust::CaAnchor { "ca" } else { "pin" })).unwrap();
    write_secrets(&directory);
    std::fs::write(directory.join("homemx.toml"), configuration(ca, trust, false)).unwrap();
    std::fs::write(directory.join("implicit.toml"), configuration(ca, trust, true)).unwrap();
    std::fs::write(directory.join("message.eml"), MESSAGE).unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let ns = Some(namespace.as_str());
    for address in [SMARTHOST_ADDRESS, POP_ADDRESS, DYNDNS_ADDRESS, CHECKIP_ADDRESS, GENUINE_CHECKIP[0].1, GENUINE_CHECKIP[1].1] {
        add_wan_address(&namespace, address).unwrap();
    }
    let zone_file = directory.join("zone.json");
    write_json_atomically(&zone_file, &zone()).unwrap();
    let _dns = DnsServer::start(ns, &["192.168.77.1:53"], &zone_file, &directory.join("dns")).expect("DNS server");
    let _sntp = SntpServer::start(ns, &SntpConfig::new(format!("{ROUTER}:123")), &directory.join("sntp")).expect("SNTP server");
    let mailbox = MailboxHost::start(&namespace, "192.168.77.1:24", "lmtp", &directory.join("mailbox")).expect("mailbox host");
    let genuine_listen: Vec<String> = GENUINE_CHECKIP.iter().map(|(_, address)| format!("{address}:443")).collect();
    let genuine_listen: Vec<&str> = genuine_listen.iter().map(String::as_str).collect();
    let mut genuine = HttpsConfig::new(&genuine_listen, ca.leaf(DYNDNS_NAME).unwrap());
    if trust == Trust::CaAnchor {
        for (name, _) in GENUINE_CHECKIP {
            genuine = genuine.with_certificate_for(ca.leaf(name).unwrap());
        }
    }
    let checkip = HttpsEndpoints::start(ns, &genuine, &directory.join("genuine-checkip")).expect("genuine check-IP services");
    checkip.set_control(&json!({"ip_body": PUBLIC_ADDRESS})).unwrap();
    let rogue = |label: &str, address: Ipv4Addr, port: u16, rogue_mode: RogueMode, hostname: &str, alert_mentions: &'static str| Case {
        label: format!("{label} ({mode})"),
        rogue: RogueTlsServer::start(ns, &[&format!("{address}:{port}")], rogue_mode, hostname, &directory.join(format!("rogue-{address}-{port}")))
            .expect("rogue TLS server"),
        alert_mentions,
    };
    let first_phase = [
        rogue("(a) smarthost, STARTTLS", SMARTHOST_ADDRESS, 587, RogueMode::SmtpStartTls, SMARTHOST_NAME, "smarthost"),
        rogue("(c) backup MX POP3, STLS", POP_ADDRESS, 110, RogueMode::Pop3Stls, POP_NAME, "backup mx"),
        rogue("(e) DynDNS update", DYNDNS_ADDRESS, 443, RogueMode::Https, DYNDNS_NAME, DYNDNS_NAME),
        rogue("(f) check-IP", CHECKIP_ADDRESS, 443, RogueMode::Https, CHECKIP_NAME, CHECKIP_NAME),
    ];
    let second_phase = [
        rogue("(b) smarthost, implicit TLS", SMARTHOST_ADDRESS, 465, RogueMode::SmtpImplicit, SMARTHOST_NAME, "smarthost"),
        rogue("(d) backup MX POP3, implicit TLS", POP_ADDRESS, 995, RogueMode::Pop3Implicit, POP_NAME, "backup mx"),
    ];

    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let machine = Machine::start(&MachineConfig::on_network(elf.to_path_buf(), flash, &network), &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    let owner = Owner::at(&directory);
    owner.provision();
    machine.log.wait_for(0, "time: clock set", Duration::from_secs(60)).expect("the clock is set");
    let submit = || {
        let reply = send_mail(
            &namespace,
            LAN_CLIENT,
            format!("{APPLIANCE}:587"),
            "alice@example.org",
            &["carol@remote.example"],
            &directory.join("message.eml"),
            false,
        )
        .expect("smtp client runs");
        assert_eq!(reply["data"][0].as_u64(), Some(250), "LAN submission accepted: {reply}");
    };

    let mut failures = Vec::new();
    // First phase: STARTTLS and STLS, the DynDNS check with the rogue check-IP source and
    // the rogue update endpoint.
    // (The unlock at provisioning already starts a fetch and a DynDNS check: the whole boot
    // so far belongs to this phase.)
    submit();
    assert!(owner.homemx(&["fetch-now"]).status.success(), "fetch-now");
    for case in &first_phase {
        wait_and_check_alert(case, &machine, 0, &mut failures);
    }
    // Second phase: implicit TLS for the smarthost (465) and the POP3 server (995).
    let line = machine.log.line_count();
    let set = owner.homemx(&["config", "set", "--config", "implicit.toml"]);
    assert!(set.status.success(), "config set: {}", String::from_utf8_lossy(&set.stderr));
    submit();
    assert!(owner.homemx(&["fetch-now"]).status.success(), "fetch-now");
    for case in &second_phase {
        wait_and_check_alert(case, &machine, line, &mut failures);
    }
    for case in first_phase.iter().chain(&second_phase) {
        check_rogue_log(case, &mut failures);
    }

    // Both messages wait in the queue, deferred, not delivered and not bounced.
    let lines = machine.log.lines();
    let delivered: Vec<&String> = lines.iter().filter(|line| line.contains("accepted by the smarthost")).collect();
    if !delivered.is_empty() {
        failures.push(format!("outbound ({mode}): the message was handed to the rogue smarthost: {delivered:?}"));
    }
    let status = status_json(&network);
    let mail = &status["mail"];
    if mail["deferred"].as_u64().unwrap_or(0) < 2 || mail["bounced"].as_u64() != Some(0) {
        failures.push(format!("outbound ({mode}): both messages must stay queued, deferred, not bounced; /status.json mail: {mail}"));
    }
    let alerts: Vec<&str> =
        status["alerts"].as_array().map(|all| all.iter().filter_map(|alert| alert["kind"].as_str()).collect()).unwrap_or_default();
    if !alerts.contains(&"certificate_rejected") {
        failures.push(format!("status ({mode}): /status.json shows no certificate_rejected alert: {alerts:?}"));
    }
    // The control: the same trust mode lets the appliance talk to genuine servers.
    let genuine_answers = checkip.requests().iter().filter(|request| request["tls_version"] == "TLSv1.3").count();
    if genuine_answers == 0 {
        failures.push(format!("control ({mode}): the genuine check-IP services (real certificates) were never asked"));
    }
    let bounces: Vec<Value> = mailbox
        .messages()
        .into_iter()
        .map(|(_, envelope)| envelope)
        .filter(|envelope| envelope["rcpt_tos"] == json!(["alice@example.org"]))
        .collect();
    if !bounces.is_empty() {
        failures.push(format!("outbound ({mode}): a non-delivery report went to the sender: {bounces:?}"));
    }
    eprintln!("{mode}: {} failures; /status.json mail {mail}, alerts {alerts:?}", failures.len());
    drop(machine);
    failures
}

#[test]
fn no_credential_and_no_message_reaches_a_tls_server_that_shows_no_certificate() {
    let started = Instant::now();
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let names = [SMARTHOST_NAME, POP_NAME, DYNDNS_NAME, CHECKIP_NAME, GENUINE_CHECKIP[0].0, GENUINE_CHECKIP[1].0];
    let ca = TestCa::create_for(&new_run_directory("rogue-tls-test-ca").unwrap().join("ca"), &names).expect("test CA");
    let mut failures = run(&elf, &ca, Trust::CaAnchor);
    failures.extend(run(&elf, &ca, Trust::PinnedKey));
    eprintln!("rogue TLS end to end: {:.0} s", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
