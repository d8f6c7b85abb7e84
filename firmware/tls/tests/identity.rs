//! The device identity against outside judges: openssl reads and verifies the self-signed
//! certificate and the certificate request, rustls-webpki accepts the certificate for the host
//! name, chains that openssl's CA issued for the device's request install, and the chains an
//! attacker (or a careless owner) brings are refused, each with its own reason.
//!
//! Fixtures: `tests/fixtures/identity/generate.sh` (committed outputs; "now" is 2026-12-01).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use homemx_tls::identity::install::{check_chain, InstallError};
use homemx_tls::identity::summary::format_date;
use homemx_tls::identity::{certificate_request, pem, self_signed_certificate, CertificateSummary, DeviceKey, HostName};
use rustls::pki_types::{CertificateDer, DnsName, ServerName};

const HOST: &str = "mx.example.org";
/// 2026-12-01T00:00:00Z, inside the good fixtures' validity (2026-01-01 .. 2046-01-01).
const NOW: u64 = 1_796_083_200;
/// 2046-01-01T00:00:00Z.
const FIXTURE_NOT_AFTER: u64 = 2_398_377_600;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/identity").join(name)).unwrap()
}

fn device_key() -> DeviceKey {
    let hex = String::from_utf8(fixture("device.key.hex")).unwrap();
    let hex = hex.trim();
    let bytes: Vec<u8> = (0..hex.len() / 2).map(|index| u8::from_str_radix(&hex[2 * index..2 * index + 2], 16).unwrap()).collect();
    DeviceKey::from_stored(&bytes).unwrap()
}

fn host() -> HostName {
    HostName::new(HOST).unwrap()
}

fn install(chain: &str) -> Result<Vec<CertificateDer<'static>>, InstallError> {
    check_chain(&fixture(chain), &device_key(), &host(), NOW)
}

/// Runs openssl in `directory`; returns its output whatever the exit status.
fn openssl(directory: &Path, arguments: &[&str]) -> Output {
    Command::new("openssl").current_dir(directory).args(arguments).output().expect("openssl runs")
}

fn succeeded(output: &Output) -> String {
    assert!(output.status.success(), "openssl failed: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

// --- What the device makes, judged by openssl and webpki -----------------------------------

#[test]
fn openssl_reads_the_self_signed_certificate_as_specified() {
    let pki = common::Pki::new("identity-self-signed");
    let key = DeviceKey::generate(&mut rand_core::OsRng);
    let certificate = self_signed_certificate(&key, &host(), NOW, 397, &mut rand_core::OsRng).unwrap();
    std::fs::write(pki.directory.join("self.pem"), pem::encode(pem::CERTIFICATE, &certificate)).unwrap();
    std::fs::write(pki.directory.join("public.der"), key.public_key_der()).unwrap();
    let text = succeeded(&openssl(&pki.directory, &["x509", "-in", "self.pem", "-noout", "-text"]));
    println!("{text}");
    for expected in [
        "Version: 3 (0x2)",
        "Signature Algorithm: ecdsa-with-SHA256",
        "Issuer: CN = mx.example.org",
        "Not Before: Dec  1 00:00:00 2026 GMT",
        "Not After : Jan  2 00:00:00 2028 GMT",
        "Subject: CN = mx.example.org",
        "Public Key Algorithm: id-ecPublicKey",
        "NIST CURVE: P-256",
        "X509v3 Basic Constraints: critical\n                CA:FALSE",
        "X509v3 Key Usage: critical\n                Digital Signature\n",
        "X509v3 Extended Key Usage: \n                TLS Web Server Authentication\n",
        "X509v3 Subject Alternative Name: \n                DNS:mx.example.org\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?}");
    }
    // The serial openssl reads is the one the summary shows: positive, 16 octets.
    let serial = succeeded(&openssl(&pki.directory, &["x509", "-in", "self.pem", "-noout", "-serial"]));
    let summary = CertificateSummary::of(&certificate).unwrap();
    assert_eq!(serial.trim(), format!("serial={}", summary.serial));
    assert_eq!(summary.serial.len(), 32);
    // The exported public key is the certificate's.
    let from_certificate = succeeded(&openssl(&pki.directory, &["x509", "-in", "self.pem", "-noout", "-pubkey"]));
    let exported = succeeded(&openssl(&pki.directory, &["pkey", "-pubin", "-inform", "DER", "-in", "public.der"]));
    assert_eq!(from_certificate, exported);
    println!("self-signed certificate: {} bytes DER; public key: {} bytes", certificate.len(), key.public_key_der().len());
}

#[test]
fn openssl_verifies_the_self_signature_and_catches_a_forged_one() {
    let pki = common::Pki::new("identity-verify");
    let key = DeviceKey::generate(&mut rand_core::OsRng);
    let certificate = self_signed_certificate(&key, &host(), NOW - 3600, 397, &mut rand_core::OsRng).unwrap();
    std::fs::write(pki.directory.join("self.pem"), pem::encode(pem::CERTIFICATE, &certificate)).unwrap();
    let verify = |file: &str| {
        let time = (NOW + 86_400).to_string();
        openssl(
            &pki.directory,
            &["verify", "-attime", &time, "-check_ss_sig", "-partial_chain", "-purpose", "sslserver", "-verify_hostname", HOST, "-CAfile", file, file],
        )
    };
    let output = verify("self.pem");
    assert_eq!(succeeded(&output).trim(), "self.pem: OK");

    // The last byte is inside the ECDSA signature's s: the same certificate with a broken
    // signature is refused by the same command, so the check above can fail.
    let mut forged = certificate.clone();
    *forged.last_mut().unwrap() ^= 0x01;
    std::fs::write(pki.directory.join("forged.pem"), pem::encode(pem::CERTIFICATE, &forged)).unwrap();
    let output = verify("forged.pem");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && text.contains("signature failure"), "{text}");
}

#[test]
fn webpki_accepts_the_self_signed_certificate_for_the_name_only() {
    let key = DeviceKey::generate(&mut rand_core::OsRng);
    let certificate = CertificateDer::from(self_signed_certificate(&key, &host(), NOW, 397, &mut rand_core::OsRng).unwrap());
    let end_entity = webpki::EndEntityCert::try_from(&certificate).unwrap();
    let name = |text: &'static str| ServerName::DnsName(DnsName::try_from(text).unwrap());
    end_entity.verify_is_valid_for_subject_name(&name(HOST)).unwrap();
    assert!(end_entity.verify_is_valid_for_subject_name(&name("other.example.org")).is_err());
    assert!(end_entity.verify_is_valid_for_subject_name(&name("example.org")).is_err());
    // Its own key signed it (the crate's pin of a key is over this same SubjectPublicKeyInfo).
    assert_eq!(&*end_entity.subject_public_key_info(), &key.public_key_der()[..]);
}

#[test]
fn a_name_too_long_for_the_common_name_goes_into_a_critical_subject_alt_name() {
    let pki = common::Pki::new("identity-long-name");
    let long = format!("{}.{}.example.org", "a".repeat(40), "b".repeat(40));
    let key = DeviceKey::generate(&mut rand_core::OsRng);
    let certificate = self_signed_certificate(&key, &HostName::new(&long).unwrap(), NOW, 30, &mut rand_core::OsRng).unwrap();
    std::fs::write(pki.directory.join("self.pem"), pem::encode(pem::CERTIFICATE, &certificate)).unwrap();
    let text = succeeded(&openssl(&pki.directory, &["x509", "-in", "self.pem", "-noout", "-text"]));
    assert!(text.contains("Subject: \n") || text.contains("Subject: \r\n") || text.contains("Subject:\n"), "{text}");
    assert!(text.contains(&format!("X509v3 Subject Alternative Name: critical\n                DNS:{long}")), "{text}");
    let time = (NOW + 60).to_string();
    let output = openssl(
        &pki.directory,
        &["verify", "-attime", &time, "-check_ss_sig", "-partial_chain", "-verify_hostname", &long, "-CAfile", "self.pem", "self.pem"],
    );
    assert_eq!(succeeded(&output).trim(), "self.pem: OK");
}

#[test]
fn openssl_verifies_the_request_and_catches_a_forged_one() {
    let pki = common::Pki::new("identity-request");
    let key = DeviceKey::generate(&mut rand_core::OsRng);
    let request = certificate_request(&key, &host()).unwrap();
    std::fs::write(pki.directory.join("device.csr"), pem::encode(pem::CERTIFICATE_REQUEST, &request)).unwrap();
    let output = openssl(&pki.directory, &["req", "-in", "device.csr", "-verify", "-noout", "-text"]);
    let text = succeeded(&output);
    println!("{text}");
    assert!(text.contains("verify OK"), "{text}");
    for expected in [
        "Version: 1 (0x0)",
        "Subject: CN = mx.example.org",
        "NIST CURVE: P-256",
        "Requested Extensions:\n                X509v3 Subject Alternative Name: \n                    DNS:mx.example.org",
        "Signature Algorithm: ecdsa-with-SHA256",
    ] {
        assert!(text.contains(expected), "missing {expected:?}");
    }
    let mut forged = request.clone();
    *forged.last_mut().unwrap() ^= 0x01;
    std::fs::write(pki.directory.join("forged.csr"), pem::encode(pem::CERTIFICATE_REQUEST, &forged)).unwrap();
    // OpenSSL 3.0 exits 0 either way: the verdict is in the text.
    let text = succeeded(&openssl(&pki.directory, &["req", "-in", "forged.csr", "-verify", "-noout"]));
    assert!(text.contains("verify failure") && !text.contains("verify OK"), "{text}");
    println!("certificate request: {} bytes DER", request.len());
}

#[test]
fn the_committed_request_is_what_the_code_makes_from_the_test_key() {
    // RFC 6979 signatures are deterministic: the fixture CSR the CA signed came from this code.
    let request = certificate_request(&device_key(), &host()).unwrap();
    assert_eq!(pem::encode(pem::CERTIFICATE_REQUEST, &request).as_bytes(), &fixture("device.csr.pem")[..]);
}

#[test]
fn a_fresh_request_signed_by_openssl_x509_req_installs() {
    // The owner's path with a new key: `homemx tls csr`, a CA (openssl x509 -req), `homemx tls
    // install` of leaf + CA, at the real time.
    let pki = common::Pki::new("identity-fresh");
    pki.root("owner-ca", "ec:P-256", "30", "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n");
    let key = DeviceKey::generate(&mut rand_core::OsRng);
    let request = certificate_request(&key, &host()).unwrap();
    std::fs::write(pki.directory.join("device.csr"), pem::encode(pem::CERTIFICATE_REQUEST, &request)).unwrap();
    std::fs::write(pki.directory.join("device.ext"), "[v3]\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:mx.example.org\n").unwrap();
    pki.openssl(&[
        "x509", "-req", "-in", "device.csr", "-CA", "owner-ca.pem", "-CAkey", "owner-ca.key", "-set_serial", "4242", "-days", "10",
        "-extfile", "device.ext", "-extensions", "v3", "-out", "device.pem",
    ]);
    let mut chain = std::fs::read(pki.directory.join("device.pem")).unwrap();
    chain.extend(std::fs::read(pki.directory.join("owner-ca.pem")).unwrap());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let installed = check_chain(&chain, &key, &host(), now).unwrap();
    assert_eq!(installed.len(), 2);
    let summary = CertificateSummary::of(&installed[0]).unwrap();
    assert_eq!(summary.issuer_common_name.as_deref(), Some("owner-ca"));
    assert_eq!(summary.not_after - summary.not_before, 10 * 86_400);
    assert_eq!((summary.days_until_expiry(summary.not_before), summary.days_until_expiry(summary.not_before + 1)), (10, 9));
    // The same chain for another device's key is refused.
    let other = DeviceKey::generate(&mut rand_core::OsRng);
    assert_eq!(check_chain(&chain, &other, &host(), now), Err(InstallError::WrongKey));
}

// --- CA-issued chains from the fixtures ----------------------------------------------------

#[test]
fn chains_openssl_issued_for_the_request_install() {
    for (file, length, issuer) in [
        ("chain.pem", 2, "homemx test intermediate CA"),
        ("chain-with-root.pem", 3, "homemx test intermediate CA"),
        ("leaf-from-root.pem", 2, "homemx test root CA"),
    ] {
        let installed = install(file).unwrap_or_else(|error| panic!("{file}: {error}"));
        assert_eq!(installed.len(), length, "{file}");
        let summary = CertificateSummary::of(&installed[0]).unwrap();
        assert_eq!(summary.subject_common_name.as_deref(), Some(HOST));
        assert_eq!(summary.issuer_common_name.as_deref(), Some(issuer));
        assert!(!summary.self_issued);
        assert_eq!((format_date(summary.not_before).as_str(), format_date(summary.not_after).as_str()), ("2026-01-01T00:00:00Z", "2046-01-01T00:00:00Z"));
        // 2026-12-01 to 2046-01-01: 19 years with 5 leap days, and December.
        assert_eq!(summary.days_until_expiry(NOW), 19 * 365 + 5 + 31);
        assert!(!summary.renewal_alert_due(NOW));
        assert!(summary.renewal_alert_due(FIXTURE_NOT_AFTER - 21 * 86_400));
    }
    // CRLF line ends, and text around the blocks (as some CAs' downloads have), are fine.
    let mut decorated = b"subject=CN = mx.example.org\r\n".to_vec();
    decorated.extend(String::from_utf8(fixture("chain.pem")).unwrap().replace('\n', "\r\n").into_bytes());
    assert_eq!(check_chain(&decorated, &device_key(), &host(), NOW).unwrap().len(), 2);
    // The host name as configured may differ in case.
    assert!(check_chain(&fixture("chain.pem"), &device_key(), &HostName::new("MX.Example.ORG").unwrap(), NOW).is_ok());
}

#[test]
fn the_installed_certificates_are_the_ones_in_the_file() {
    let installed = install("chain-with-root.pem").unwrap();
    let text = String::from_utf8(fixture("chain-with-root.pem")).unwrap();
    let blocks: Vec<&str> = text.split_inclusive("-----END CERTIFICATE-----\n").collect();
    assert_eq!(blocks.len(), 3);
    for (certificate, block) in installed.iter().zip(blocks) {
        assert_eq!(pem::encode(pem::CERTIFICATE, certificate), block);
    }
}

#[test]
fn validity_edges_are_inclusive() {
    let chain = fixture("chain.pem");
    assert!(check_chain(&chain, &device_key(), &host(), FIXTURE_NOT_AFTER).is_ok());
    assert_eq!(
        check_chain(&chain, &device_key(), &host(), FIXTURE_NOT_AFTER + 1),
        Err(InstallError::Expired { index: 0, not_after: FIXTURE_NOT_AFTER })
    );
    assert_eq!(check_chain(&chain, &device_key(), &host(), 1_767_225_599), Err(InstallError::NotYetValid { index: 0, not_before: 1_767_225_600 }));
}

// --- The attacker's chains -----------------------------------------------------------------

#[test]
fn a_leaf_for_another_key_is_refused() {
    // Valid, CA-issued, for the right name: only the key is wrong (someone else's certificate).
    assert_eq!(install("wrong-key.pem"), Err(InstallError::WrongKey));
    // And the right chain for another device.
    let other = DeviceKey::generate(&mut rand_core::OsRng);
    assert_eq!(check_chain(&fixture("chain.pem"), &other, &host(), NOW), Err(InstallError::WrongKey));
}

#[test]
fn a_leaf_for_another_name_is_refused() {
    assert_eq!(install("wrong-name.pem"), Err(InstallError::WrongName));
    // A name only in the commonName does not count (webpki reads SANs only).
    assert_eq!(install("common-name-only.pem"), Err(InstallError::WrongName));
    // The right chain checked against another configured name.
    let other = HostName::new("mail.example.org").unwrap();
    assert_eq!(check_chain(&fixture("chain.pem"), &device_key(), &other, NOW), Err(InstallError::WrongName));
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    assert_eq!(install("expired.pem"), Err(InstallError::Expired { index: 0, not_after: 1_609_459_200 }));
    assert_eq!(install("not-yet-valid.pem"), Err(InstallError::NotYetValid { index: 0, not_before: 2_366_841_600 }));
    assert_eq!(install("expired-intermediate.pem"), Err(InstallError::Expired { index: 1, not_after: 1_609_459_200 }));
}

#[test]
fn a_chain_with_the_wrong_intermediate_is_refused() {
    // Same name as the real intermediate, another key: the names chain, the signature does not.
    assert_eq!(install("wrong-intermediate.pem"), Err(InstallError::BadSignature { index: 0 }));
    // The right certificates in an order clients cannot follow.
    assert_eq!(install("wrong-order.pem"), Err(InstallError::WrongIssuer { index: 0 }));
    // Every signature is right, but the leaf's issuer is not a CA: webpki's path check.
    let refusal = install("issuer-not-ca.pem").unwrap_err();
    println!("issuer-not-ca.pem: {refusal:?}: {refusal}");
    assert_eq!(refusal, InstallError::Refused(webpki::Error::EndEntityUsedAsCa));
    assert_eq!(refusal.to_string(), "the chain does not validate: an issuer is not a CA (basicConstraints)");
}

#[test]
fn a_leaf_for_clients_only_is_refused() {
    assert_eq!(install("client-only.pem"), Err(InstallError::NotForServers));
}

#[test]
fn an_empty_or_absent_chain_is_refused() {
    assert_eq!(install("leaf-only.pem"), Err(InstallError::IssuerMissing));
    let key = device_key();
    assert_eq!(check_chain(b"", &key, &host(), NOW), Err(InstallError::Empty));
    assert_eq!(check_chain(b"\n\n", &key, &host(), NOW), Err(InstallError::Empty));
    // A DER certificate where PEM was expected.
    let der = first_der(&fixture("chain.pem"));
    assert_eq!(check_chain(&der, &key, &host(), NOW), Err(InstallError::NotPem));
    // Only the request, or the request with the chain.
    assert_eq!(check_chain(&fixture("device.csr.pem"), &key, &host(), NOW), Err(InstallError::UnexpectedBlock));
    let mut with_request = fixture("chain.pem");
    with_request.extend(fixture("device.csr.pem"));
    assert_eq!(check_chain(&with_request, &key, &host(), NOW), Err(InstallError::UnexpectedBlock));
}

#[test]
fn every_flipped_byte_of_the_leaf_is_refused() {
    let text = String::from_utf8(fixture("chain.pem")).unwrap();
    let leaf = first_der(text.as_bytes());
    let intermediate = fixture("intermediate.pem");
    let mut refused = 0;
    for position in 0..leaf.len() {
        let mut tampered = leaf.clone();
        tampered[position] ^= 0x01;
        let mut chain = pem::encode(pem::CERTIFICATE, &tampered).into_bytes();
        chain.extend_from_slice(&intermediate);
        let result = check_chain(&chain, &device_key(), &host(), NOW);
        assert!(result.is_err(), "byte {position} flipped was accepted");
        refused += 1;
    }
    println!("{refused} tampered leaves refused");
}

#[test]
fn truncated_certificates_never_panic() {
    let leaf = first_der(&fixture("chain.pem"));
    for length in 0..leaf.len() {
        assert!(CertificateSummary::of(&leaf[..length]).is_none());
        let mut chain = pem::encode(pem::CERTIFICATE, &leaf[..length]).into_bytes();
        chain.extend(fixture("intermediate.pem"));
        assert!(check_chain(&chain, &device_key(), &host(), NOW).is_err());
    }
}

/// The DER of the first certificate in PEM `text`.
fn first_der(text: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::from_pem_slice(text).unwrap().to_vec()
}
