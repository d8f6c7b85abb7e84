//! ACME end to end (issue 17): Pebble (Let's Encrypt's test CA, Debian `pebble`) runs inside the
//! test's network namespace on a WAN address, its HTTPS certificate from the test CA, its DNS at
//! the test DNS server (which maps `mx.example.org` to the appliance), its HTTP-01 validation on
//! port 80 of the appliance, arriving from a WAN address (a route in the namespace gives every
//! connection it opens to the appliance the WAN client's source address). The appliance,
//! provisioned with `[tls.acme]`, obtains a certificate by itself; `openssl s_client -starttls
//! smtp -verify_return_error` with Pebble's root (from its management port) as the only anchor
//! verifies port 25; a WAN client asking port 80 for `/`, `/status.json` and the (now stale)
//! challenge token gets 403 each, while the LAN still gets the status page; a sending Postfix
//! with `smtp_tls_security_level = verify` (Pebble's root its only CA) delivers to port 25.
//! The QEMU plugin counts the issuance's instructions (`Operation::AcmeIssuance`; printed, not
//! asserted but that one was counted). Power cuts inside a renewal's installation are the
//! `acme_tls_alpn` test's (and `identity_power_cut`'s, and the services' host sweep's).
//!
//! Needs root (namespaces), `pebble` (host-tools/setup.sh), openssl, curl and Postfix.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::instructions::{wait_for_counts, Operation};
use homemx_qemu::machine::new_run_directory;
use homemx_qemu::network::{APPLIANCE, LAN_CLIENT, WAN_CLIENT};
use homemx_qemu::pebble::{curl, port_25_chain, AcmeRig, Pebble, PebbleConfig, HOST};
use homemx_qemu::peers::send_mail;
use homemx_qemu::postfix_sender::{PostfixSender, PostfixSenderConfig};
use serde_json::Value;

#[test]
fn the_appliance_obtains_a_certificate_from_pebble_and_port_80_answers_the_wan_nothing_else() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("acme").unwrap();
    let rig = AcmeRig::start(&directory);
    let namespace = rig.namespace().to_string();
    let pebble = Pebble::start(&namespace, &rig.ca, &directory.join("pebble"), PebbleConfig::default());
    let dns = &rig.dns;
    let ca = &rig.ca;
    let network = &rig.network;

    let (machine, _owner) = homemx_qemu::owner::boot_provisioned_with(elf, network, &directory, |config| config.operation_counts = true);

    // 1. The device obtains the certificate by itself (the courier's run once the clock is set).
    let started = Instant::now();
    let installed = machine.log.wait_for(0, "acme: certificate for mx.example.org installed", Duration::from_secs(240));
    if installed.is_err() {
        let lines = machine.log.lines();
        let acme: Vec<&String> = lines.iter().filter(|line| line.contains("acme")).collect();
        panic!(
            "no certificate: device log (acme lines): {acme:#?}\nPebble: {}\nDNS queries: {:?}",
            pebble.log(),
            dns.queries()
        );
    }
    eprintln!("acme: certificate installed {:.1} s after provisioning", started.elapsed().as_secs_f64());
    // The issuance's end mark comes just before the log line: wait for its count.
    let issuance = wait_for_counts(&machine.operation_counts_file(), Operation::AcmeIssuance, 1, Duration::from_secs(10))
        .unwrap_or_else(|error| panic!("the issuance's instructions were not counted: {error}"));
    println!("acme: one issuance: {} instructions (≈ {:.2} s at 250 MHz)", issuance[0], issuance[0] as f64 / 250e6);
    let lines = machine.log.lines();
    let token = lines
        .iter()
        .find_map(|line| line.split_once("acme: answering the http-01 challenge on port 80, token ").map(|(_, token)| token.trim().to_string()))
        .expect("the device logged the challenge token");
    let pebble_log = pebble.log();
    assert!(pebble_log.contains(&token), "Pebble validated this token: {pebble_log}");
    assert!(lines.iter().any(|line| line.contains("acme: the account's P-256 key was generated")), "the account key is the device's own");
    // With a CA-issued certificate the device asks for ARI renewal information (RFC 9773);
    // Pebble 2.4's directory names none, and the device says so.
    machine
        .log
        .wait_for(0, "acme: the CA offers no renewal information (ARI)", Duration::from_secs(30))
        .unwrap_or_else(|error| panic!("the device looked for ARI in the directory: {error}"));

    // The heap high-water so far is the issuance's (no inbound TLS session yet): /health from the LAN.
    let (status, health) = curl(&namespace, LAN_CLIENT, &[&format!("http://{APPLIANCE}/health")]);
    assert_eq!(status, 200, "{health}");
    let health: Value = serde_json::from_str(&health).expect("/health is JSON");
    assert_eq!(health["acme"]["last"], "ok", "{health}");
    eprintln!(
        "acme: /health after issuance: heap high-water {} B (since boot, the issuance included), heap used {} B, stack high-water {} B, acme {}",
        health["heap_high_water_bytes"], health["heap_used_bytes"], health["stack_high_water_bytes"], health["acme"]
    );
    homemx_qemu::budgets::assert_stack_within_budget("after an ACME issuance", health["stack_high_water_bytes"].as_u64().unwrap_or(0));

    // 2. Port 25 presents the issued chain: it verifies with Pebble's root as the only anchor.
    let root_file = directory.join("pebble-root.pem");
    pebble.write_root(&namespace, &root_file);
    let mut served = String::new();
    // The listener reloads at the identity's next generation: give it a moment.
    for _ in 0..10 {
        served = port_25_chain(&namespace, &root_file);
        if served.contains("Verification: OK") {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(served.contains("Verification: OK"), "port 25 presents the ACME chain: {served}");
    let served_test_ca = port_25_chain(&namespace, &ca.ca_certificate);
    assert!(!served_test_ca.contains("Verification: OK"), "not verifiable with another anchor: {served_test_ca}");

    // 3. Port 80 from the WAN: 403 for the status pages and the stale token.
    let base = format!("http://{APPLIANCE}");
    for path in ["/", "/status.json", "/health", &format!("/.well-known/acme-challenge/{token}")] {
        let (status, body) = curl(&namespace, WAN_CLIENT, &["-H", "Host: mx.example.org", &format!("{base}{path}")]);
        assert_eq!(status, 403, "WAN GET {path}: {body}");
        assert!(!body.contains("homemx") || body.contains("403"), "{path}: nothing of the page: {body}");
    }
    // 4. A sending Postfix that verifies (smtp_tls_security_level = verify, Pebble's root as its
    //    only CA, the name mx.example.org) delivers to port 25.
    let mut config = PostfixSenderConfig::new(SocketAddrV4::new(WAN_CLIENT, 25), SocketAddrV4::new(APPLIANCE, 25));
    config.extra_settings = format!(
        "\nsmtp_tls_security_level = verify\nsmtp_tls_verify_cert_match = {HOST}\nsmtp_tls_CAfile = {}\nsmtp_tls_CApath =\n",
        root_file.display()
    );
    let mut postfix = PostfixSender::start(&namespace, &config, &directory.join("postfix-verify")).expect("Postfix starts");
    let file = directory.join("verify.eml");
    std::fs::write(&file, "From: Sender <someone@sender.example>\r\nTo: Alice <alice@example.org>\r\nSubject: verified\r\n\r\nsent with a verified certificate\r\n").unwrap();
    let reply = send_mail(&namespace, WAN_CLIENT, config.listen, "someone@sender.example", &["alice@example.org"], &file, false).expect("the SMTP client runs");
    assert_eq!(reply["data"][0], 250, "Postfix took the message: {reply}");
    let sent = postfix.wait_for_log(&["status=sent", "status=deferred"], Duration::from_secs(90)).unwrap_or_else(|error| panic!("{error}"));
    assert!(sent.contains("status=sent"), "Postfix with verify could not deliver: {sent}");
    let sessions = postfix.tls_sessions();
    postfix.stop();
    assert!(sessions.iter().any(|session| session.trust == "Verified"), "Postfix verified the certificate: {sessions:?}");

    // The LAN still gets the status page.
    let (status, page) = curl(&namespace, LAN_CLIENT, &[&format!("{base}/status.json")]);
    assert_eq!(status, 200, "the LAN's status page: {page}");
}
