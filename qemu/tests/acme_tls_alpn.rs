//! ACME TLS-ALPN-01 end to end (issue 17, for lines whose port 80 is blocked): Pebble validates
//! on the appliance's port 443 only (its HTTP-01 port points where nothing listens), the
//! appliance, provisioned with `challenge = "tls-alpn-01"`, obtains its certificate, and port 25
//! then verifies with Pebble's root as the only anchor.
//!
//! The attacks, while the challenge is pending: a handshake without ALPN and one offering
//! `http/1.1` get no certificate (the TLS layer refuses them, the port is open); only
//! `acme-tls/1` gets the validation certificate (the host name, the critical acmeIdentifier
//! extension). When no attempt runs, port 443 is closed. A `reuse_key = false` renewal cut by a
//! power cut inside its installation leaves the key and chain in use, or the new ones.
//!
//! The account says `reuse_key = false`: a forced renewal (`homemx tls renew`) installs a
//! certificate for a new key, and port 25's handshake with it verifies.
//!
//! Needs root (namespaces), `pebble` (host-tools/setup.sh) and openssl.

use std::process::{Command, Stdio};
use std::time::Duration;

use homemx_qemu::chain_power_cut::{cut_inside, port_25_once_up, restart_unlocked, CutPoints};
use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::machine::{new_run_directory, MachineConfig};
use homemx_qemu::network::{APPLIANCE, LAN_CLIENT};
use homemx_qemu::pebble::{curl, AcmeRig, Pebble, PebbleConfig, HOST};

/// Where Pebble would validate HTTP-01: nothing listens there (port 80 "blocked").
const CLOSED_HTTP_PORT: u16 = 81;

/// `openssl s_client` to `port` of the appliance (name [`HOST`]), with `extra` arguments:
/// its output (stdout and stderr).
fn s_client(namespace: &str, port: u16, extra: &[&str]) -> String {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "timeout", "30", "openssl", "s_client", "-connect", &format!("{APPLIANCE}:{port}")])
        .args(["-servername", HOST])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// What `openssl x509 -noout <option>` says of the first certificate in `output`.
fn certificate_text(output: &str, option: &str) -> String {
    let begin = output.find("-----BEGIN CERTIFICATE-----").expect("a certificate");
    let end = output[begin..].find("-----END CERTIFICATE-----").expect("its end") + begin + "-----END CERTIFICATE-----".len();
    let mut child = Command::new("openssl").args(["x509", "-noout", option]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &output.as_bytes()[begin..end]).unwrap();
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
}

#[test]
fn the_appliance_obtains_a_certificate_by_tls_alpn_01_and_port_443_answers_only_acme_tls_1() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("acme-tls-alpn").unwrap();
    let rig = AcmeRig::start_with_challenge(&directory, "tls-alpn-01", "reuse_key = false\n");
    let namespace = rig.namespace().to_string();
    // Pebble's random wait before each validation (up to 5 s) stays on: port 443 must answer
    // while the device polls, which is what the attacks below rely on.
    let config = PebbleConfig { http_port: CLOSED_HTTP_PORT, validation_wait: true, ..PebbleConfig::default() };
    let pebble = Pebble::start(&namespace, &rig.ca, &directory.join("pebble"), config);
    let dns = &rig.dns;

    let (mut machine, owner) = homemx_qemu::owner::boot_provisioned(elf.clone(), &rig.network, &directory);

    // 1. The challenge is pending: port 443 listens. Only `acme-tls/1` gets a certificate.
    let pending = machine.log.wait_for(0, "acme: answering the tls-alpn-01 challenge on port 443", Duration::from_secs(240));
    if pending.is_err() {
        let lines = machine.log.lines();
        let acme: Vec<&String> = lines.iter().filter(|line| line.contains("acme")).collect();
        panic!("no tls-alpn-01 challenge: {acme:#?}\nDNS queries: {:?}", dns.queries());
    }
    // The CA's own validations (three at once) may hold every listener for a moment.
    let mut validation = String::new();
    for _ in 0..20 {
        validation = s_client(&namespace, 443, &["-alpn", "acme-tls/1"]);
        if !validation.contains("Connection refused") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let no_alpn = s_client(&namespace, 443, &[]);
    let other_alpn = s_client(&namespace, 443, &["-alpn", "http/1.1"]);
    assert!(validation.contains("ALPN protocol: acme-tls/1"), "acme-tls/1 negotiated: {validation}");
    let text = certificate_text(&validation, "-text");
    assert!(text.contains(&format!("DNS:{HOST}")), "the validation certificate names the host: {text}");
    assert!(text.contains("1.3.6.1.5.5.7.1.31: critical"), "it carries the critical acmeIdentifier: {text}");
    for (what, output) in [("no ALPN", &no_alpn), ("ALPN http/1.1", &other_alpn)] {
        assert!(!output.contains("Connection refused"), "{what}: port 443 was listening (the TLS layer must refuse): {output}");
        assert!(!output.contains("BEGIN CERTIFICATE"), "{what}: no certificate: {output}");
        assert!(output.contains("alert") || output.contains("no peer certificate"), "{what}: the handshake failed: {output}");
    }

    // 2. The certificate is issued and installed; Pebble validated on port 443 (its HTTP-01 port
    //    is closed), and the device answered no HTTP-01 challenge. Pebble validates from three
    //    places at once and the device has three listeners: if the probes above held one just
    //    then, that validation was refused and the attempt failed; the owner then asks again.
    let mut installed = machine.log.wait_for_any(0, &["acme: certificate for mx.example.org installed", "acme: attempt failed"], Duration::from_secs(120));
    if installed.as_deref().is_ok_and(|line| line.contains("attempt failed") && line.contains("Failed to connect")) {
        eprintln!("acme_tls_alpn: the first attempt lost a validation to the probes; asking again with `homemx tls renew`");
        let from = machine.log.lines().len();
        let renew = owner.homemx(&["tls", "renew"]);
        assert!(renew.status.success(), "tls renew: {}", String::from_utf8_lossy(&renew.stderr));
        installed = machine.log.wait_for(from, "acme: certificate for mx.example.org installed", Duration::from_secs(120));
    }
    let pebble_log = pebble.log();
    if !installed.as_deref().is_ok_and(|line| line.contains("installed")) {
        let lines = machine.log.lines();
        let acme: Vec<&String> = lines.iter().filter(|line| line.contains("acme")).collect();
        panic!("no certificate: {acme:#?}\nPebble: {pebble_log}");
    }
    let lines = machine.log.lines();
    assert!(lines.iter().any(|line| line.contains("acme: tls-alpn-01 handshake completed")), "the device served Pebble's validation");
    assert!(!lines.iter().any(|line| line.contains("http-01 challenge on port 80")), "no HTTP-01 challenge was answered");

    // 3. Port 25 presents the issued chain: it verifies with Pebble's root as the only anchor.
    let root_file = directory.join("pebble-root.pem");
    pebble.write_root(&namespace, &root_file);
    let ca_file = root_file.display().to_string();
    let verified_leaf = || {
        let mut served = String::new();
        for _ in 0..10 {
            served = s_client(&namespace, 25, &["-starttls", "smtp", "-verify_hostname", HOST, "-verify_return_error", "-CAfile", &ca_file, "-showcerts", "-no_ign_eof"]);
            if served.contains("Verify return code: 0 (ok)") {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        assert!(served.contains("Verify return code: 0 (ok)"), "port 25 presents the ACME chain: {served}");
        served
    };
    let first = verified_leaf();

    // 3b. `reuse_key = false`: a renewal brings a new key, installed with its chain (the
    //     handshake above and below proves key and certificate belong together).
    let from = machine.log.lines().len();
    let renew = owner.homemx(&["tls", "renew"]);
    assert!(renew.status.success(), "tls renew: {}", String::from_utf8_lossy(&renew.stderr));
    let renewed = machine.log.wait_for_any(from, &["acme: certificate for mx.example.org installed", "acme: attempt failed"], Duration::from_secs(120));
    assert!(renewed.as_deref().is_ok_and(|line| line.contains("installed")), "the renewal: {renewed:?}");
    let mut second = verified_leaf();
    for _ in 0..10 {
        if certificate_text(&second, "-fingerprint") != certificate_text(&first, "-fingerprint") {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        second = verified_leaf();
    }
    assert_ne!(certificate_text(&first, "-fingerprint"), certificate_text(&second, "-fingerprint"), "port 25 presents the renewed certificate");
    assert_ne!(certificate_text(&first, "-pubkey"), certificate_text(&second, "-pubkey"), "reuse_key = false: the renewed certificate has a new key");

    // The heap high-water since boot (the issuance with its three port-443 listeners), from the LAN.
    let (_, health) = curl(&namespace, LAN_CLIENT, &[&format!("http://{APPLIANCE}/health")]);
    let health: serde_json::Value = serde_json::from_str(&health).expect("/health is JSON");
    eprintln!("acme_tls_alpn: heap high-water after a TLS-ALPN-01 issuance: {} B", health["heap_high_water_bytes"]);

    // 4. No attempt runs now: port 443 is closed.
    let closed = s_client(&namespace, 443, &["-alpn", "acme-tls/1"]);
    assert!(!closed.contains("BEGIN CERTIFICATE") && (closed.contains("refused") || closed.contains("errno")), "port 443 closed after the attempt: {closed}");

    // 5. Power cuts inside a `reuse_key = false` renewal's installation (QEMU killed there:
    //    homemx_qemu::chain_power_cut): cut before the header switch, the device presents the
    //    second key and chain after restart and unlock; cut after it, a new key and chain. Each
    //    handshake completes (key and certificate belong together) and verifies.
    let cut_points = CutPoints::of(&elf).unwrap();
    let config = MachineConfig::on_network(elf, directory.join("flash.img"), &rig.network);
    let before = port_25_once_up(&namespace, HOST, &root_file);
    let cli = cut_inside(&mut machine, &directory, &["tls", "renew"], &cut_points.before_the_switch(), Duration::from_secs(180));
    machine = restart_unlocked(&config, &directory);
    let _ = cli.join();
    let kept = port_25_once_up(&namespace, HOST, &root_file);
    assert!(kept.verified && kept.fingerprint == before.fingerprint, "cut before the switch: the chain in use stays: {}", kept.text);
    let cli = cut_inside(&mut machine, &directory, &["tls", "renew"], &cut_points.after_the_switch(), Duration::from_secs(180));
    let _machine = restart_unlocked(&config, &directory);
    let _ = cli.join();
    let switched = port_25_once_up(&namespace, HOST, &root_file);
    assert!(switched.verified && switched.fingerprint != before.fingerprint, "cut after the switch: the renewed chain: {}", switched.text);
    assert_ne!(certificate_text(&before.text, "-pubkey"), certificate_text(&switched.text, "-pubkey"), "with its new key");
}
