//! The device's TLS identity end to end: after provisioning (with an SNTP server, so the clock
//! is set) the device has made its own P-256 key and a self-signed certificate for its host
//! name (`mx.example.org`); `homemx tls csr` returns a request openssl verifies; a test CA made
//! by openssl here signs it; `homemx tls install` installs the chain and `homemx status`, the
//! status page and `/status.json` show the CA as issuer, and port 25 presents it at once
//! (`openssl s_client -starttls smtp` verifies it against the CA, which the self-signed
//! certificate before did not). Then the attacker's chains: one for
//! another key, one for another name, an expired one: each refused with its reason, and the
//! device keeps the certificate it had (same issuer, same expiry). Last, a chain larger than
//! one of the server's outgoing records (an RSA-4096 CA's): port 25 sends it in pieces and
//! openssl verifies it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::machine::new_run_directory;
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT, ROUTER};
use homemx_qemu::owner::{provider_configuration, write_secrets, Owner};
use homemx_qemu::provider::{SntpConfig, SntpServer};
use homemx_qemu::request_signer::{utc_date, RequestSigner};
use serde_json::Value;

const HOST: &str = "mx.example.org";
const CA_NAME: &str = "homemx identity test CA";

fn openssl(directory: &Path, arguments: &[&str]) -> String {
    let output = Command::new("openssl").args(arguments).current_dir(directory).output().expect("openssl runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "openssl {arguments:?}: {text}");
    text
}

/// A CA (P-256, CA:TRUE, keyCertSign) in `directory`, and its signer for dated issues.
fn make_ca(directory: &Path) -> RequestSigner {
    openssl(
        directory,
        &[
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "3650", "-subj",
            &format!("/CN={CA_NAME}"), "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", "ca.key", "-out", "ca.pem",
        ],
    );
    RequestSigner::new(directory, &directory.join("ca.pem"), &directory.join("ca.key"))
}

/// `homemx --json status`'s `certificate` object.
fn certificate(owner: &Owner) -> Value {
    let output = owner.homemx(&["--json", "status"]);
    assert!(output.status.success(), "status works: {}", String::from_utf8_lossy(&output.stderr));
    let document: Value = serde_json::from_slice(&output.stdout).expect("status --json is JSON");
    document["certificate"].clone()
}

/// The certificate's identity (subject, issuer, kind, expiry), without the day count that
/// moves with the clock.
fn identity(certificate: &Value) -> Value {
    let mut identity = certificate.clone();
    identity.as_object_mut().expect("a certificate").remove("days_until_expiry");
    identity
}

/// `homemx tls install chain`, expected refused with `reason` in its message; the
/// certificate stays `kept`.
fn refused(owner: &Owner, chain: &str, reason: &str, kept: &Value) {
    let output = owner.homemx(&["tls", "install", chain]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{chain} must be refused");
    assert!(stderr.contains(reason), "{chain}: the refusal names its reason ({reason}): {stderr}");
    assert!(stderr.contains("keeps its current certificate"), "{stderr}");
    assert_eq!(identity(&certificate(owner)), identity(kept), "{chain}: the device keeps the certificate it had");
}

/// What `openssl s_client` says of the chain port 25 presents after STARTTLS, checked against
/// the CA in `ca_file` for the device's name (inside the namespace): "Verification: OK" when it verifies.
fn port_25_chain(namespace: &str, ca_file: &Path) -> String {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "timeout", "30", "openssl", "s_client", "-brief", "-starttls", "smtp"])
        .args(["-connect", &format!("{APPLIANCE}:25"), "-verify_hostname", HOST, "-verify_return_error", "-CAfile"])
        .arg(ca_file)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout)
}

#[test]
fn the_device_makes_its_key_signs_a_request_and_installs_only_a_chain_for_its_key_name_and_time() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("device-tls-identity").unwrap();
    let signer = make_ca(&directory);
    // The RSA-4096 CA of step 7, made now: `req -x509` dates it from this second, and the
    // device's clock (set by SNTP once, then QEMU's) may lag the host's by seconds under load,
    // so a CA made mid-test could still be "not yet valid" for it.
    let large = directory.join("large-ca");
    std::fs::create_dir_all(&large).unwrap();
    openssl(
        &large,
        &[
            "req", "-x509", "-newkey", "rsa:4096", "-nodes", "-days", "3650", "-subj", "/CN=homemx large chain test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", "ca.key", "-out", "ca.pem",
        ],
    );
    let large_signer = RequestSigner::new(&large, &large.join("ca.pem"), &large.join("ca.key"));
    // Signs the request file `request` in the run directory (see RequestSigner::issue).
    let issue = |request: &str, name: &str, dates: Option<(&str, &str)>, chain: &str| {
        signer.issue(&directory.join(request), name, dates, chain).display().to_string()
    };
    write_secrets(&directory);
    std::fs::write(directory.join("homemx.toml"), provider_configuration(&directory.join("ca.pem"), &["alice@example.org"], "")).unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let (machine, owner) = homemx_qemu::owner::boot_provisioned(elf, &network, &directory);

    // 1. The key at the first unlock with a configuration; no certificate while the clock is
    //    unknown (no SNTP server yet), and a chain cannot be installed then; the self-signed
    //    certificate once the clock is set (the courier's refresh).
    machine.log.wait_for(0, "tls: the device's P-256 key was generated", Duration::from_secs(60)).expect("the key is made at provisioning");
    assert!(machine.log.lines().iter().all(|line| !line.contains("time: clock set")), "no SNTP server yet");
    assert_eq!(certificate(&owner), Value::Null, "no certificate before the clock is set");
    let early = owner.homemx(&["tls", "csr", "--out", "early.csr"]);
    assert!(early.status.success(), "a request needs no clock: {}", String::from_utf8_lossy(&early.stderr));
    let early_chain = issue("early.csr", HOST, None, "early-chain.pem");
    let output = owner.homemx(&["tls", "install", &early_chain]);
    assert!(!output.status.success() && String::from_utf8_lossy(&output.stderr).contains("TimeUnknown"), "{output:?}");
    let _sntp = SntpServer::start(Some(&namespace), &SntpConfig::new(format!("{ROUTER}:123")), &directory.join("sntp")).expect("SNTP server");
    machine.log.wait_for(0, "time: clock set", Duration::from_secs(90)).expect("the clock is set");
    machine.log.wait_for(0, "tls: self-signed certificate for mx.example.org made", Duration::from_secs(60)).expect("self-signed certificate");
    let own = certificate(&owner);
    assert_eq!(own["self_signed"], true, "{own}");
    assert_eq!(own["subject"], HOST, "{own}");
    assert!(own["days_until_expiry"].as_i64().is_some_and(|days| days >= 390), "{own}");
    let served = port_25_chain(&namespace, &directory.join("ca.pem"));
    assert!(!served.contains("Verification: OK"), "the self-signed certificate does not verify against the CA: {served}");

    // 2. The request: signed by the device's key (openssl verifies it), for its name.
    let output = owner.homemx(&["tls", "csr", "--out", "device.csr"]);
    assert!(output.status.success(), "tls csr: {}", String::from_utf8_lossy(&output.stderr));
    let verified = openssl(&directory, &["req", "-in", "device.csr", "-verify", "-noout", "-subject"]);
    assert!(verified.contains("verify OK") || verified.contains("Certificate request self-signature verify OK"), "{verified}");
    assert!(verified.contains(&format!("CN = {HOST}")), "{verified}");
    let again = owner.homemx(&["tls", "csr"]);
    assert_eq!(String::from_utf8_lossy(&again.stdout), std::fs::read_to_string(directory.join("device.csr")).unwrap(), "RFC 6979: the same request");

    // 3. The CA signs it; the chain is installed and shown everywhere with the CA as issuer.
    let good = issue("device.csr", HOST, None, "good-chain.pem");
    let output = owner.homemx(&["tls", "install", &good]);
    assert!(output.status.success(), "tls install: {}", String::from_utf8_lossy(&output.stderr));
    machine.log.wait_for(0, "tls: CA-issued chain of 2 certificates installed", Duration::from_secs(10)).expect("installed");
    let installed = certificate(&owner);
    assert_eq!(installed["self_signed"], false, "{installed}");
    assert_eq!(installed["issuer"], CA_NAME, "{installed}");
    assert_eq!(installed["subject"], HOST, "{installed}");
    assert!(installed["days_until_expiry"].as_i64().is_some_and(|days| (88..=90).contains(&days)), "{installed}");
    // The listener presents the new chain at once (it rebuilds its configuration when the chain
    // it was built with is no longer the published one).
    let served = port_25_chain(&namespace, &directory.join("ca.pem"));
    assert!(served.contains("Verification: OK"), "port 25 presents the installed chain: {served}");
    let text = owner.homemx(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("certificate  {HOST} (issuer {CA_NAME}), expires")), "{text}");
    let page = homemx_qemu::status_page::get(&network, LAN_CLIENT, &APPLIANCE.to_string(), "/");
    assert!(page.body.contains("Own TLS certificate") && page.body.contains(CA_NAME), "the status page shows the issuer");
    let json = homemx_qemu::status_page::status_json(&network);
    assert_eq!(json["certificate"]["issuer"], CA_NAME, "{json}");
    assert_eq!(json["certificate"]["not_after_unix"], installed["not_after_unix"], "{json}");

    // 4. The attacker's chains, each refused; the installed chain stays.
    openssl(
        &directory,
        &[
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "other.key", "-subj",
            &format!("/CN={HOST}"), "-out", "other.csr",
        ],
    );
    let other_key = issue("other.csr", HOST, None, "other-key-chain.pem");
    refused(&owner, &other_key, "not for this device's key", &installed);
    let other_name = issue("device.csr", "mail.attacker.example", None, "other-name-chain.pem");
    refused(&owner, &other_name, "not valid for the device's host name", &installed);
    let expired = issue("device.csr", HOST, Some(("20240101000000Z", "20240401000000Z")), "expired-chain.pem");
    refused(&owner, &expired, "certificate 0 expired", &installed);
    std::fs::write(directory.join("key-chain.pem"), std::fs::read_to_string(directory.join("other.key")).unwrap() + &std::fs::read_to_string(directory.join(&good)).unwrap()).unwrap();
    refused(&owner, &directory.join("key-chain.pem").display().to_string(), "never include a private key", &installed);

    // 5. The private key never left the device: nothing the CLI received holds more than the
    //    request and the certificate (checked by the wire types: no answer can carry a
    //    secret); and the installed chain survives a lock and unlock.
    let lock = owner.homemx(&["lock"]);
    assert!(lock.status.success());
    let unlock = owner.homemx(&["unlock", "--passphrase-file", "passphrase"]);
    assert!(unlock.status.success(), "{}", String::from_utf8_lossy(&unlock.stderr));
    assert_eq!(identity(&certificate(&owner)), identity(&installed), "the chain is in the encrypted store, not only in RAM");

    // 6. A chain that expires in 10 days is installed, and the renewal alert is raised (21 days
    //    ahead); a fresh chain ends it.
    let alerts = |owner: &Owner| -> Vec<String> {
        owner.status()["alerts"].as_array().unwrap().iter().map(|alert| alert["kind"].as_str().unwrap().to_string()).collect()
    };
    assert!(!alerts(&owner).contains(&"certificate_expiring".to_string()), "no alert for a 90-day certificate");
    let ten_days = issue("device.csr", HOST, Some((&utc_date("-1 day"), &utc_date("+10 days"))), "ten-day-chain.pem");
    let output = owner.homemx(&["tls", "install", &ten_days]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(alerts(&owner).contains(&"certificate_expiring".to_string()), "the renewal alert: {:?}", alerts(&owner));
    machine.log.wait_for(0, "ALERT certificate_expiring", Duration::from_secs(10)).expect("the alert is logged");
    let output = owner.homemx(&["tls", "install", &good]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!alerts(&owner).contains(&"certificate_expiring".to_string()), "a fresh chain ends the alert");

    // 7. A chain larger than one of the server's outgoing records (2 KiB, homemx-tls's
    //    `SERVER_OUTGOING_BUFFER`): an RSA-4096 CA's. Port 25 sends its first flight a record at a
    //    time, pausing while the buffer is full, and openssl receives and verifies the whole chain.
    //    (Its CA was made before the device booted, see the start.)
    let large_chain = large_signer.issue(&directory.join("device.csr"), HOST, None, "large-chain.pem");
    openssl(&large, &["x509", "-in", "large-chain.pem.leaf.pem", "-outform", "DER", "-out", "leaf.der"]);
    openssl(&large, &["x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der"]);
    let chain_octets = ["leaf.der", "ca.der"].iter().map(|file| std::fs::metadata(large.join(file)).unwrap().len()).sum::<u64>();
    assert!(chain_octets > 2048, "the chain ({chain_octets} octets) is larger than one outgoing record");
    let output = owner.homemx(&["tls", "install", &large_chain.display().to_string()]);
    assert!(output.status.success(), "tls install: {}", String::from_utf8_lossy(&output.stderr));
    let served = port_25_chain(&namespace, &large.join("ca.pem"));
    assert!(served.contains("Verification: OK"), "port 25 presents the {chain_octets}-octet chain: {served}");
    let served = port_25_chain(&namespace, &directory.join("ca.pem"));
    assert!(!served.contains("Verification: OK"), "and no longer the first CA's: {served}");
}
