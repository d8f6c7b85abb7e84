//! DANE end to end (issue #17): the device's DNS check looks up `_25._tcp.<host>` TLSA at
//! every DynDNS check and alerts (`tlsa_mismatch`) when a record is published that does not
//! name the key it uses. The setup is the DynDNS one (the authoritative test DNS server with
//! the zone under the test's control, HTTPS check-IP and update services, SNTP), so the device
//! has its host name (`home.example.net`, the DynDNS name) and its self-signed certificate.
//!
//! The test computes the record itself from the certificate port 25 serves (`openssl s_client
//! -starttls smtp`, then `openssl x509 -pubkey | openssl pkey -pubin -outform DER | sha256sum`)
//! and checks that `homemx tls tlsa` prints exactly that record. Then: no TLSA record → no
//! alert; the matching record → no alert; a wrong digest → the alert on `/status.json` and in
//! `homemx status`; a digest cut short → still the alert (refused, not a match); a record of a
//! usage the device does not check (`1 1 1` with the right digest) → the alert too; the
//! matching record again → the alert ends. Last, a CA-issued chain for the same key is
//! installed: `homemx tls tlsa --issuer` prints the `2 1 1` record of the CA's key (computed
//! here from the CA certificate), a published `2 1 1` for the CA matches, one naming another
//! key alerts.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::dyndns_rig::DynDnsRig;
use homemx_qemu::machine::new_run_directory;
use homemx_qemu::network::APPLIANCE;
use homemx_qemu::request_signer::RequestSigner;
use homemx_qemu::owner::{CHECKIP_SERVER, DYNDNS_HOST, DYNDNS_SERVER};
use homemx_qemu::provider::{
    write_json_atomically, TestCa, CHECKIP_NAME, DYNDNS_NAME,
};
use serde_json::{json, Value};

const HOST: &str = DYNDNS_HOST;
const OUR_ADDRESS: &str = "198.51.100.7";
const CHECK: Duration = Duration::from_secs(100);

/// The zone: ours in every record, and the given TLSA records (none: the name does not exist).
fn zone(tlsa: &[String]) -> Value {
    let mut names = json!({
        DYNDNS_NAME: {"A": [DYNDNS_SERVER.to_string()]},
        CHECKIP_NAME: {"A": [CHECKIP_SERVER.to_string()]},
        HOST: {"A": [OUR_ADDRESS]},
        "example.org": {"MX": [{"preference": 10, "exchange": HOST}]},
    });
    if !tlsa.is_empty() {
        names[format!("_25._tcp.{HOST}")] = json!({"TLSA": tlsa});
    }
    json!({"ttl": 60, "names": names})
}

/// Runs `program` with `input` on stdin, returns stdout; panics on failure.
fn run(program: &str, arguments: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program).args(arguments).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{program} {arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// The SHA-256 of the SubjectPublicKeyInfo of a PEM certificate, as openssl and sha256sum
/// compute it (hex).
fn key_digest(certificate: &str) -> String {
    let public_key = run("openssl", &["x509", "-pubkey", "-noout"], certificate.as_bytes());
    let spki = run("openssl", &["pkey", "-pubin", "-outform", "DER"], &public_key);
    let sum = String::from_utf8(run("sha256sum", &[], &spki)).unwrap();
    let digest = sum.split_whitespace().next().unwrap().to_string();
    assert_eq!(digest.len(), 64, "{sum}");
    digest
}

/// The SHA-256 of the SubjectPublicKeyInfo of the certificate port 25 serves after STARTTLS.
fn served_key_digest(namespace: &str) -> String {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "timeout", "30", "openssl", "s_client", "-starttls", "smtp", "-servername", HOST])
        .args(["-connect", &format!("{APPLIANCE}:25")])
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let start = text.find("-----BEGIN CERTIFICATE-----").unwrap_or_else(|| panic!("port 25 served no certificate: {text}"));
    let end = text.find("-----END CERTIFICATE-----").expect("a whole certificate") + "-----END CERTIFICATE-----".len();
    key_digest(&text[start..end])
}

fn alert_kinds(document: &Value) -> Vec<String> {
    document["alerts"].as_array().expect("alerts").iter().map(|alert| alert["kind"].as_str().unwrap().to_string()).collect()
}

#[test]
fn the_dns_check_alerts_when_the_published_tlsa_record_does_not_name_the_key_in_use() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("dane-tlsa").unwrap();
    let ca = TestCa::create(&directory.join("ca")).expect("test CA");
    let rig = DynDnsRig::start(&directory, &ca, &zone(&[]), OUR_ADDRESS);
    let (network, zone_file) = (&rig.network, &rig.zone_file);
    let dns = &rig.dns;
    let namespace = network.namespace().to_string();

    let (machine, owner) = homemx_qemu::owner::boot_provisioned(elf, network, &directory);
    machine.log.wait_for(0, "time: clock set", Duration::from_secs(60)).expect("the clock is set");
    machine.log.wait_for(0, &format!("tls: self-signed certificate for {HOST} made"), Duration::from_secs(90)).expect("the certificate");
    // A DNS check now (`homemx fetch-now` also checks DynDNS); returns the log position after it.
    let check_now = |from: usize| -> usize {
        assert!(owner.homemx(&["fetch-now"]).status.success());
        machine.log.wait_for(from, "dyndns: checked", CHECK).expect("a DynDNS check runs");
        let lines = machine.log.lines();
        from + lines[from..].iter().position(|line| line.contains("dyndns: checked")).unwrap() + 1
    };
    let alerted = || {
        let page = alert_kinds(&homemx_qemu::status_page::status_json(network)).contains(&"tlsa_mismatch".to_string());
        let cli = alert_kinds(&owner.status()).contains(&"tlsa_mismatch".to_string());
        assert_eq!(page, cli, "the status page and `homemx status` agree");
        page
    };
    let tlsa_queries = || dns.queries().iter().filter(|query| query["type"] == "TLSA" && query["name"] == format!("_25._tcp.{HOST}")).count();

    // 1. The record `homemx tls tlsa` prints is the one computed here from the served
    //    certificate; the self-signed certificate has no issuer to name.
    let digest = served_key_digest(&namespace);
    let expected = format!("_25._tcp.{HOST}. IN TLSA 3 1 1 {digest}");
    let output = owner.homemx(&["tls", "tlsa"]);
    assert!(output.status.success(), "tls tlsa: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), expected);
    let output = owner.homemx(&["--json", "tls", "tlsa"]);
    let document: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!((document["record"].as_str(), document["data"].as_str(), document["usage"].as_u64()), (Some(expected.as_str()), Some(digest.as_str()), Some(3)));
    let output = owner.homemx(&["tls", "tlsa", "--issuer"]);
    assert!(!output.status.success() && String::from_utf8_lossy(&output.stderr).contains("self-signed"), "{output:?}");

    // 2. No TLSA record: DANE is not in use, no alert (and the name was asked for).
    let mut line = check_now(machine.log.lines().len());
    machine.log.wait_for(0, &format!("dane: no TLSA record for _25._tcp.{HOST}"), Duration::from_secs(10)).expect("the lookup is logged");
    assert!(tlsa_queries() >= 1, "the check looks the TLSA record up");
    assert!(!alerted(), "no record, no alert");

    // 3. The matching record: no alert.
    write_json_atomically(zone_file, &zone(&[format!("3 1 1 {digest}")])).unwrap();
    let from = line;
    line = check_now(line);
    machine.log.wait_for(from, "matches the key in use", Duration::from_secs(10)).expect("the match is logged");
    assert!(!alerted(), "a matching record, no alert");

    // 4. A wrong digest (the renewal with a new key, or an attacker's record): the alert.
    let mut wrong = digest.clone().into_bytes();
    wrong[63] = if wrong[63] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    write_json_atomically(zone_file, &zone(&[format!("3 1 1 {wrong}")])).unwrap();
    let from = line;
    line = check_now(line);
    machine.log.wait_for(from, "ALERT tlsa_mismatch", Duration::from_secs(10)).expect("the mismatch alert");
    assert!(alerted(), "a wrong digest alerts");

    // 5. The alert ends when a later check matches.
    write_json_atomically(zone_file, &zone(&[format!("3 1 1 {digest}")])).unwrap();
    line = check_now(line);
    assert!(!alerted(), "the matching record again ends the alert");

    // 6. A digest cut short (31 octets) is refused, not matched by its prefix; a record of a
    //    usage the device does not check (1 1 1, PKIX-EE) with the right digest is not a match.
    for (case, record) in [("cut short", format!("3 1 1 {}", &digest[..62])), ("another usage", format!("1 1 1 {digest}"))] {
        write_json_atomically(zone_file, &zone(&[record])).unwrap();
        let from = line;
        line = check_now(line);
        machine.log.wait_for(from, "ALERT tlsa_mismatch", Duration::from_secs(10)).unwrap_or_else(|_| panic!("{case}: the alert"));
        assert!(alerted(), "{case}: alerts");
        write_json_atomically(zone_file, &zone(&[format!("3 1 1 {digest}")])).unwrap();
        line = check_now(line);
        assert!(!alerted(), "{case}: the matching record ends it");
    }

    // 7. A CA-issued chain for the same key (the device's request, signed by the test CA):
    //    `--issuer` prints the 2 1 1 record of the CA's key as openssl computes it from the CA
    //    certificate; the 3 1 1 record stays (same key); a published 2 1 1 for the CA matches,
    //    one with the device's own digest (a TA record naming the end entity) alerts.
    let request = directory.join("device.csr");
    let output = owner.homemx(&["tls", "csr", "--out", request.to_str().unwrap()]);
    assert!(output.status.success(), "tls csr: {}", String::from_utf8_lossy(&output.stderr));
    let signer = RequestSigner::new(&directory.join("device-ca"), &ca.ca_certificate, &ca.directory.join("ca.key"));
    let chain = signer.issue(&request, HOST, None, "chain.pem");
    let output = owner.homemx(&["tls", "install", chain.to_str().unwrap()]);
    assert!(output.status.success(), "tls install: {}", String::from_utf8_lossy(&output.stderr));
    let ca_digest = key_digest(&std::fs::read_to_string(&ca.ca_certificate).unwrap());
    let output = owner.homemx(&["tls", "tlsa", "--issuer"]);
    assert!(output.status.success(), "tls tlsa --issuer: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("_25._tcp.{HOST}. IN TLSA 2 1 1 {ca_digest}"));
    assert_eq!(String::from_utf8_lossy(&owner.homemx(&["tls", "tlsa"]).stdout).trim(), expected, "the key is the same");
    assert_eq!(served_key_digest(&namespace), digest, "port 25 serves the CA-issued certificate for the same key");
    write_json_atomically(zone_file, &zone(&[format!("2 1 1 {ca_digest}")])).unwrap();
    let from = line;
    line = check_now(line);
    machine.log.wait_for(from, "matches the issuing CA's key", Duration::from_secs(10)).expect("the DANE-TA match is logged");
    assert!(!alerted(), "the issuing CA's record, no alert");
    write_json_atomically(zone_file, &zone(&[format!("2 1 1 {digest}")])).unwrap();
    let from = line;
    check_now(line);
    machine.log.wait_for(from, "ALERT tlsa_mismatch", Duration::from_secs(10)).expect("a 2 1 1 record naming another key alerts");
    assert!(alerted(), "a 2 1 1 record naming another key alerts");
    eprintln!("dane: {} TLSA queries over the test", tlsa_queries());
}
