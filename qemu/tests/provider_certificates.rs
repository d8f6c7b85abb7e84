//! Every kind of certificate chain a real provider uses, against real provider software: the
//! smarthost is Postfix 3.7 (TLS 1.3, AUTH only inside TLS against Dovecot's auth socket,
//! relaying to a capture peer) and the backup MX is Dovecot's POP3 server, each found by DNS.
//! One boot; for each kind (ECDSA P-256, ECDSA P-384, RSA-2048 with PKCS#1 v1.5 signatures,
//! RSA-2048 whose CA signs with RSA-PSS, RSA-4096) a fresh test CA of that kind issues both
//! servers' leaves, the owner points the appliance's anchors at that CA (`config set`), Postfix
//! restarts with the new leaf and a new Dovecot serves it. Then one message submitted on the
//! LAN must arrive at Postfix's capture byte-exact (after the Received: headers of Postfix and
//! the appliance) after AUTH inside TLS 1.3, with Postfix's log naming the kind's handshake
//! signature, and leave the appliance's queue; and one message waiting at Dovecot must reach
//! the LAN mailbox host and be deleted at Dovecot. The TLS modes alternate (smarthost STARTTLS
//! with POP3S, then implicit TLS with STLS). Every round runs; the test fails at the end naming each
//! kind that failed, with the appliance's, Postfix's and Dovecot's lines about it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use homemx_qemu::backup_mx::{BackupMx, BackupMxConfig, BackupTls};
use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::flash_image;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT, ROUTER};
use homemx_qemu::owner::{provider_configuration, write_secrets, Owner, POP3_PASSWORD, SMARTHOST_PASSWORD};
use homemx_qemu::peers::{send_mail, split_received, MailboxHost};
use homemx_qemu::postfix_smarthost::{PostfixConfig, PostfixSmarthost};
use homemx_qemu::provider::{add_wan_address, CertificateKind, DnsServer, SntpConfig, SntpServer, TestCa, POP_NAME, SMARTHOST_NAME};
use serde_json::json;

const SMARTHOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 25);
const POP_SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 110);
/// The account `provider_configuration` names for the smarthost.
const SMARTHOST_USER: &str = "homemx@example.org";
const POP_USER: &str = "backup-mx@example.org";
/// How long one delivery (either direction) may take before the round counts as failed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The message a LAN client submits in the round `label`.
fn outbound_message(label: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: Carol <carol@remote.example>\r\nSubject: through Postfix with {0}\r\nMessage-ID: <outbound-{0}@example.org>\r\n\r\nHello Carol,\r\n.a line with a leading dot\r\n\r\nAlice\r\n",
        label
    )
    .into_bytes()
}

/// The message waiting at the backup MX in the round `label`.
fn waiting_message(label: &str) -> Vec<u8> {
    format!(
        "Return-Path: <dave@remote.test>\r\nDelivered-To: bob@example.org\r\nFrom: dave@remote.test\r\nTo: bob@example.org\r\nSubject: waited at Dovecot with {0}\r\nMessage-ID: <backup-{0}@remote.test>\r\n\r\nHello Bob\r\n.leading dot\r\n",
        label
    )
    .into_bytes()
}

/// The TLS modes of round `index`: (smarthost implicit TLS?, backup MX mode and port).
fn modes(index: usize) -> (bool, BackupTls, u16) {
    if index.is_multiple_of(2) {
        (false, BackupTls::Implicit, 995)
    } else {
        (true, BackupTls::StartTls, 110)
    }
}

/// `homemx.toml` trusting `ca` for both services in round `index`'s TLS modes.
fn write_configuration(directory: &Path, ca: &TestCa, index: usize) {
    let (smarthost_implicit, pop_tls, pop_port) = modes(index);
    let mut text = provider_configuration(&ca.ca_certificate, &["alice@example.org", "bob@example.org"], "time_servers = [\"ntp.example.net\"]\n");
    if smarthost_implicit {
        text = text.replace("port = 587\ntls = \"starttls\"", "port = 465\ntls = \"implicit\"");
        assert!(text.contains("tls = \"implicit\""), "the smarthost section changed shape: {text}");
    }
    let pop_mode = if pop_tls == BackupTls::Implicit { "implicit" } else { "starttls" };
    text.push_str(&format!(
        "\n[backup_mx]\nhost = \"{POP_NAME}\"\nport = {pop_port}\ntls = \"{pop_mode}\"\nuser_name = \"{POP_USER}\"\npoll_interval_seconds = 3600\npassword_file = \"secrets/pop3.password\"\nca_certificate = \"{}\"\n",
        ca.ca_certificate.display()
    ));
    std::fs::write(directory.join("homemx.toml"), text).unwrap();
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

/// Waits until `arrived` holds; gives up early (3 s after) once the appliance logged an
/// ALERT or a failed fetch since log line `from`.
fn wait_or_alert(machine: &Machine, from: usize, what: &str, mut arrived: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut alerted: Option<Instant> = None;
    loop {
        if arrived() {
            return Ok(());
        }
        let lines = machine.log.lines();
        let complaint = lines.get(from..).unwrap_or_default().iter().any(|line| line.contains("ALERT") || line.contains("fetch failed"));
        if complaint && alerted.is_none() {
            alerted = Some(Instant::now());
        }
        if alerted.is_some_and(|since| since.elapsed() > Duration::from_secs(3)) {
            return Err(format!("{what}: the appliance gave up (ALERT)"));
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {DELIVERY_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The lines of `text` worth showing for a failed round: TLS, SASL, errors, alerts.
fn relevant(text: &[String]) -> String {
    let keys = ["TLS", "SSL", "ALERT", "rror", "arning", "handshake", "certificate", "fetch", "signature", "auth"];
    text.iter().filter(|line| keys.iter().any(|key| line.contains(key))).map(|line| format!("    {line}\n")).collect()
}

#[test]
fn every_certificate_kind_works_with_real_postfix_and_dovecot() {
    let started = Instant::now();
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("provider-certificates").unwrap();
    write_secrets(&directory);
    // The CAs (RSA-4096 keys take seconds) are made while QEMU boots.
    let authorities: Vec<(CertificateKind, std::thread::JoinHandle<TestCa>)> = CertificateKind::ALL
        .into_iter()
        .map(|kind| {
            let path: PathBuf = directory.join(format!("ca-{}", kind.label()));
            (kind, std::thread::spawn(move || TestCa::create_of_kind(&path, &[SMARTHOST_NAME, POP_NAME], kind).expect("test CA")))
        })
        .collect();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let ns = Some(namespace.as_str());
    add_wan_address(&namespace, SMARTHOST).unwrap();
    add_wan_address(&namespace, POP_SERVER).unwrap();
    let zone = directory.join("zone.json");
    let names = json!({
        "ttl": 60,
        "names": {
            SMARTHOST_NAME: {"A": [SMARTHOST.to_string()]},
            POP_NAME: {"A": [POP_SERVER.to_string()]},
            "ntp.example.net": {"A": [ROUTER.to_string()]},
        }
    });
    std::fs::write(&zone, serde_json::to_vec_pretty(&names).unwrap()).unwrap();
    let _dns = DnsServer::start(ns, &["192.168.77.1:53"], &zone, &directory.join("dns")).expect("DNS server");
    let _sntp = SntpServer::start(ns, &SntpConfig::new(format!("{ROUTER}:123")), &directory.join("sntp")).expect("SNTP server");
    let mailbox = MailboxHost::start(&namespace, "192.168.77.1:24", "lmtp", &directory.join("mailbox")).expect("mailbox host");

    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let machine = Machine::start(&MachineConfig::on_network(elf, flash, &network), &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    let authorities: Vec<(CertificateKind, TestCa)> =
        authorities.into_iter().map(|(kind, handle)| (kind, handle.join().expect("the CA thread"))).collect();
    eprintln!("CAs made and QEMU up after {:?}", started.elapsed());
    let owner = Owner::at(&directory);
    write_configuration(&directory, &authorities[0].1, 0);
    owner.provision();
    machine.log.wait_for(0, "time: clock set from", Duration::from_secs(60)).expect("the clock is set");

    let mut postfix: Option<PostfixSmarthost> = None;
    let mut dovecot: Option<BackupMx> = None;
    let mut failures: Vec<String> = Vec::new();
    for (index, (kind, ca)) in authorities.iter().enumerate() {
        let round_started = Instant::now();
        let label = kind.label();
        let (smarthost_implicit, pop_tls, pop_port) = modes(index);
        if index > 0 {
            write_configuration(&directory, ca, index);
            let set = owner.homemx(&["config", "set", "--config", "homemx.toml"]);
            assert!(set.status.success(), "{label}: config set: {}", String::from_utf8_lossy(&set.stderr));
        }
        let smarthost_leaf = ca.leaf(SMARTHOST_NAME).unwrap();
        match postfix.as_mut() {
            None => {
                let config = PostfixConfig::new(SMARTHOST, 587, 465, smarthost_leaf, SMARTHOST_USER, SMARTHOST_PASSWORD);
                postfix = Some(PostfixSmarthost::start(ns, &config, &directory.join("postfix")).expect("Postfix starts"));
            }
            Some(running) => running.restart_with_certificate(smarthost_leaf).expect("Postfix restarts with the round's certificate"),
        }
        let postfix = postfix.as_ref().unwrap();
        drop(dovecot.take());
        let config = BackupMxConfig::new(format!("{POP_SERVER}:{pop_port}"), pop_tls, POP_USER, POP3_PASSWORD).with_certificate(ca.leaf(POP_NAME).unwrap());
        let backup = BackupMx::start(ns, &config, &directory.join(format!("dovecot-{label}"))).expect("Dovecot starts");
        let postfix_log_start = postfix.log().lines().count();
        let log_start = machine.log.lines().len();
        let mut problems: Vec<String> = Vec::new();

        // Outbound: LAN submission → appliance → Postfix (AUTH inside TLS 1.3) → capture.
        let message = outbound_message(label);
        let message_file = directory.join(format!("outbound-{label}.eml"));
        std::fs::write(&message_file, &message).unwrap();
        let reply = send_mail(&namespace, LAN_CLIENT, format!("{APPLIANCE}:587"), "alice@example.org", &["carol@remote.example"], &message_file, false)
            .expect("smtp client runs");
        assert_eq!(reply["data"][0], 250, "{label}: LAN submission accepted: {reply}");
        assert!(owner.homemx(&["flush"]).status.success());
        let message_id = format!("<outbound-{label}@example.org>");
        let find = || postfix.messages().into_iter().find(|(body, _)| contains(body, &message_id));
        match wait_or_alert(&machine, log_start, "outbound message at Postfix's capture", || find().is_some()) {
            Err(problem) => problems.push(problem),
            Ok(()) => {
                let (body, envelope) = find().unwrap();
                let (postfix_received, rest) = split_received(&body).expect("Postfix's Received: header");
                let (appliance_received, rest) = split_received(rest).expect("the appliance's Received: header");
                assert_eq!(rest, &message[..], "{label}: byte-exact after the two Received: headers");
                assert!(
                    postfix_received.contains("(using TLSv1.3 with cipher") && postfix_received.contains(&format!("(Authenticated sender: {SMARTHOST_USER})")),
                    "{label}: relayed after AUTH inside TLS 1.3: {postfix_received}"
                );
                assert!(appliance_received.starts_with("Received: from "), "{appliance_received}");
                assert_eq!(envelope["mail_from"], "alice@example.org", "{envelope}");
                assert_eq!(envelope["rcpt_tos"], json!(["carol@remote.example"]), "{envelope}");
                let postfix_log: Vec<String> = postfix.log().lines().skip(postfix_log_start).map(str::to_string).collect();
                let signature = format!("server-signature {}", kind.openssl_server_signature());
                let session = postfix_log.iter().find(|line| line.contains("TLS connection established from")).cloned().unwrap_or_default();
                assert!(session.contains("TLSv1.3") && session.contains(&signature), "{label}: {session:?} names {signature:?}");
                assert!(
                    postfix_log.iter().any(|line| line.contains(&format!("sasl_username={SMARTHOST_USER}")) && line.contains("sasl_method=")),
                    "{label}: AUTH at Postfix"
                );
                eprintln!("{label}: Postfix: {session}");
                // Removed from the appliance's queue.
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let status = owner.status();
                    if status["spool_messages"] == 0 && status["deferred"] == 0 {
                        break;
                    }
                    if Instant::now() > deadline {
                        problems.push(format!("the appliance's queue is not empty after delivery: {status}"));
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }

        // Inbound: Dovecot (POP3 over TLS 1.3) → appliance → LAN mailbox host.
        let waiting = waiting_message(label);
        backup.deliver(&waiting).unwrap();
        let fetch_start = machine.log.lines().len();
        assert!(owner.homemx(&["fetch-now"]).status.success());
        let backup_id = format!("<backup-{label}@remote.test>");
        let fetched = || mailbox.messages().into_iter().find(|(body, _)| contains(body, &backup_id));
        match wait_or_alert(&machine, fetch_start, "POP3 message at the LAN mailbox host", || fetched().is_some() && backup.remaining().is_empty()) {
            Err(problem) => problems.push(problem),
            Ok(()) => {
                let (body, envelope) = fetched().unwrap();
                assert!(body.ends_with(&waiting), "{label}: the fetched message arrives byte-exact after the Received: line");
                assert_eq!(envelope["rcpt_tos"], json!(["bob@example.org"]), "{envelope}");
                assert!(backup.logins() >= 1, "{label}: {}", backup.log());
                let login = backup.log().lines().find(|line| line.contains("pop3-login: Info: Login: ")).unwrap_or_default().to_string();
                assert!(login.contains("TLS"), "{label}: logged in over TLS: {login}");
                eprintln!("{label}: Dovecot: {login}");
            }
        }

        eprintln!("round {label} ({}): {:?}, {}", if smarthost_implicit { "smarthost implicit TLS, POP3 STLS" } else { "smarthost STARTTLS, POP3S" }, round_started.elapsed(), if problems.is_empty() { "ok" } else { "FAILED" });
        if !problems.is_empty() {
            let appliance: Vec<String> = machine.log.lines().get(log_start..).unwrap_or_default().to_vec();
            let postfix_lines: Vec<String> = postfix.log().lines().skip(postfix_log_start).map(str::to_string).collect();
            let dovecot_lines: Vec<String> = backup.log().lines().map(str::to_string).collect();
            let report = format!(
                "{label}: {}\n  appliance:\n{}  Postfix:\n{}  Dovecot:\n{}",
                problems.join("; "),
                relevant(&appliance),
                relevant(&postfix_lines),
                relevant(&dovecot_lines)
            );
            eprintln!("{report}");
            failures.push(report);
        }
        dovecot = Some(backup);
    }
    eprintln!("all rounds after {:?}", started.elapsed());
    homemx_qemu::peers::report_heap(&network);
    drop(dovecot);
    drop(postfix);
    assert!(failures.is_empty(), "{} of {} certificate kinds failed:\n{}", failures.len(), CertificateKind::ALL.len(), failures.join("\n"));
}
