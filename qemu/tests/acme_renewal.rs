//! ACME renewal end to end (issue 17): Pebble (the world of `homemx_qemu::pebble`, as in the
//! `acme` test) issues certificates valid for 120 seconds, so the appliance must renew by itself
//! while the test watches:
//!
//! 1. After the first certificate, the appliance renews before expiry (at two thirds of the
//!    lifetime, less jitter) without a gap in service: port 25 is asked every ~2 s with
//!    `openssl s_client -starttls smtp -verify_return_error` (Pebble's root the only anchor),
//!    every handshake verifies, and the served leaf changes (its SHA-256 fingerprint).
//! 2. Pebble stopped, `homemx tls renew`: the attempt fails, port 25 keeps serving the same
//!    leaf, `/status.json` (from the LAN) shows the failure, its error and a later next attempt
//!    (the backoff); as the certificate nears its end (a quarter of the lifetime before
//!    notAfter: 30 s) the `certificate_expiring` alert appears.
//! 3. Pebble restarted with its validation sent to ports nothing listens on (81 and 444; it
//!    forgot the account: the appliance registers again), `homemx tls renew`: the failure is
//!    reported with the CA's problem (`urn:ietf:params:acme:error:…`) in the event log and in
//!    `/status.json`.
//!
//! Needs root (namespaces), `pebble` (host-tools/setup.sh), openssl and curl.

use std::time::{Duration, Instant};

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::machine::{new_run_directory, Machine};
use homemx_qemu::pebble::{port_25_leaf, AcmeRig, Pebble, PebbleConfig, CHALLENGE, HOST};
use homemx_qemu::status_page::status_json;
use serde_json::Value;

/// The certificates' lifetime (seconds): renewal due at 80 s, the alert at 90 s.
const VALIDITY: u64 = 120;
/// The alert's lead for these certificates: a quarter of the lifetime.
const ALERT_LEAD: u64 = VALIDITY / 4;
/// Time for QEMU, the device's clock (5 s ahead of the host's) and the status page's refresh.
const SLACK: u64 = 15;

/// The device log's ACME lines (for failure messages).
fn acme_lines(machine: &Machine) -> Vec<String> {
    machine.log.lines().into_iter().filter(|line| line.contains("acme")).collect()
}

/// The active alert of `kind` in a status document.
fn alert<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["alerts"].as_array().and_then(|alerts| alerts.iter().find(|alert| alert["kind"] == kind))
}

#[test]
fn the_appliance_renews_by_itself_and_keeps_serving_alerting_when_the_ca_fails() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("acme_renewal").unwrap();
    let rig = AcmeRig::start(&directory);
    let namespace = rig.namespace().to_string();
    let short_lived = PebbleConfig { validity_seconds: Some(VALIDITY), ..PebbleConfig::default() };
    let mut pebble = Pebble::start(&namespace, &rig.ca, &directory.join("pebble"), short_lived);
    let root = directory.join("pebble-root.pem");
    pebble.write_root(&namespace, &root);
    let (machine, owner) = homemx_qemu::owner::boot_provisioned(elf, &rig.network, &directory);
    let started = Instant::now();
    let installed = format!("acme: certificate for {HOST} installed");

    // 1. The first certificate, then the renewal the device makes by itself.
    if let Err(error) = machine.log.wait_for(0, &installed, Duration::from_secs(120)) {
        panic!("no certificate: {error}\nacme lines: {:#?}\nPebble: {}", acme_lines(&machine), pebble.log());
    }
    let first_installed = machine.log.line_count();
    eprintln!("acme_renewal: first certificate {:.1} s after provisioning", started.elapsed().as_secs_f64());
    let token_line = format!("acme: answering the {CHALLENGE} challenge");
    assert!(acme_lines(&machine).iter().any(|line| line.contains(&token_line)), "the device answered the {CHALLENGE} challenge");
    // The listener reloads at the identity's next generation: the first Pebble leaf on port 25.
    let mut first_leaf = Err(String::new());
    for _ in 0..10 {
        first_leaf = port_25_leaf(&namespace, &root);
        if first_leaf.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let first_leaf = first_leaf.unwrap_or_else(|error| panic!("port 25 presents the ACME chain: {error}"));
    let status = status_json(&rig.network);
    assert_eq!(status["acme"]["last_result"], "ok", "{status}");
    assert_eq!(status["acme"]["failures"], 0, "{status}");
    assert!(alert(&status, "certificate_expiring").is_none(), "no alert for a fresh certificate: {status}");
    let first_expiry = status["acme"]["certificate_expiry_unix"].as_u64().expect("the expiry is known");
    // Every ~2 s a verified handshake, until the renewed leaf is served.
    let deadline = Instant::now() + Duration::from_secs(VALIDITY);
    let mut handshakes = 0;
    let second_leaf = loop {
        let served = port_25_leaf(&namespace, &root).unwrap_or_else(|error| {
            panic!("handshake {} did not verify (a gap in service): {error}\nacme lines: {:#?}", handshakes + 1, acme_lines(&machine))
        });
        handshakes += 1;
        let renewed = machine.log.lines()[first_installed..].iter().any(|line| line.contains(&installed));
        if renewed && served != first_leaf {
            break served;
        }
        assert!(Instant::now() < deadline, "no renewal within {VALIDITY} s: acme lines {:#?}\nPebble: {}", acme_lines(&machine), pebble.log());
        std::thread::sleep(Duration::from_secs(2));
    };
    let renewed_at = Instant::now();
    eprintln!(
        "acme_renewal: renewed by itself {:.1} s after provisioning; {handshakes} handshakes verified, none failed",
        started.elapsed().as_secs_f64()
    );
    let status = status_json(&rig.network);
    let second_expiry = status["acme"]["certificate_expiry_unix"].as_u64().unwrap();
    assert!(second_expiry > first_expiry, "the renewed certificate lasts longer: {status}");
    // Renewed from two thirds of the lifetime on (at most a fifteenth earlier: the jitter), and
    // before the first certificate expired (the issuance itself takes a few seconds).
    let renewal_time = second_expiry - VALIDITY;
    let first_not_before = first_expiry - VALIDITY;
    assert!(
        renewal_time + SLACK >= first_not_before + VALIDITY * 2 / 3 - VALIDITY / 15 && renewal_time < first_expiry,
        "renewed at {} s of the first certificate's {VALIDITY} s",
        renewal_time as i64 - first_not_before as i64
    );
    eprintln!("acme_renewal: the new certificate starts {} s into the first one's {VALIDITY} s", renewal_time as i64 - first_not_before as i64);

    // 2. Pebble stopped: a forced attempt fails, the certificate in use stays, and the alert
    //    comes a quarter of the lifetime before its end.
    pebble.stop();
    let mark = machine.log.line_count();
    assert!(owner.homemx(&["tls", "renew"]).status.success(), "tls renew");
    let failed = machine.log.wait_for(mark, "acme: attempt failed", Duration::from_secs(60)).unwrap_or_else(|error| panic!("{error}"));
    assert!(failed.contains("the certificate in use stays"), "{failed}");
    assert_eq!(port_25_leaf(&namespace, &root).as_ref(), Ok(&second_leaf), "port 25 keeps the renewed certificate");
    let status = status_json(&rig.network);
    let acme = &status["acme"];
    assert_eq!(acme["last_result"], "failed", "{status}");
    assert!(acme["failures"].as_u64().unwrap() >= 1, "{status}");
    assert!(!acme["last_error"].as_str().unwrap_or_default().is_empty(), "{status}");
    let now = status["generated_unix"].as_u64().unwrap();
    assert!(acme["next_attempt_unix"].as_u64().unwrap() > now, "a later attempt (the backoff): {status}");
    assert_eq!(acme["certificate_expiry_unix"].as_u64(), Some(second_expiry), "{status}");
    eprintln!("acme_renewal: with Pebble stopped: {acme}");
    let alert_due = second_expiry - ALERT_LEAD;
    let mut quiet_before = false;
    let alerted = loop {
        let status = status_json(&rig.network);
        let now = status["generated_unix"].as_u64().unwrap();
        match alert(&status, "certificate_expiring") {
            Some(_) => break now,
            None => quiet_before |= now + SLACK < alert_due,
        }
        assert!(now < second_expiry + SLACK, "no certificate_expiring alert by the expiry: {status}");
        assert!(renewed_at.elapsed() < Duration::from_secs(VALIDITY + 30), "no alert: {status}");
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(quiet_before, "no alert until the lead began");
    assert!(alerted + 1 >= alert_due && alerted <= alert_due + SLACK, "the alert came at {alerted}, due at {alert_due}");
    machine.log.wait_for(mark, "ALERT certificate_expiring", Duration::from_secs(5)).expect("the alert is in the event log");
    eprintln!("acme_renewal: certificate_expiring {} s before notAfter", second_expiry as i64 - alerted as i64);

    // 3. Pebble back, its validation unable to reach the device: the CA's problem is reported.
    let unreachable = PebbleConfig { http_port: 81, tls_port: 444, validity_seconds: Some(VALIDITY), validation_wait: false };
    let pebble = Pebble::start(&namespace, &rig.ca, &directory.join("pebble-unreachable"), unreachable);
    let mark = machine.log.line_count();
    assert!(owner.homemx(&["tls", "renew"]).status.success(), "tls renew");
    let failed = machine.log.wait_for(mark, "acme: attempt failed", Duration::from_secs(60)).unwrap_or_else(|error| panic!("{error}"));
    assert!(failed.contains("urn:ietf:params:acme:error:"), "the CA's problem is in the event log: {failed}\nPebble: {}", pebble.log());
    let logged = owner.logged_lines("acme: attempt failed");
    assert!(logged.len() >= 2, "both failures are in `homemx logs`: {logged:#?}");
    assert!(logged.last().is_some_and(|line| line.contains("urn:ietf:params:acme:error:")), "and the owner reads the problem there: {logged:#?}");
    let lines = machine.log.lines();
    assert!(!lines[mark..].iter().any(|line| line.contains(&installed)), "nothing installed");
    let status = status_json(&rig.network);
    let acme = &status["acme"];
    assert_eq!(acme["last_result"], "failed", "{status}");
    assert!(acme["failures"].as_u64().unwrap() >= 2, "{status}");
    let error = acme["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("urn:ietf:params:acme:error:"), "the CA's problem on the status page: {status}");
    eprintln!("acme_renewal: with the challenge unreachable: {error}");
    eprintln!("acme_renewal: {:.1} s from provisioning to the end", started.elapsed().as_secs_f64());
}
