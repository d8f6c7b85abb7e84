//! Real TLS 1.3 handshakes against `openssl s_server` on 127.0.0.1 with certificates made by the
//! openssl CLI for each run: every kind of server key a provider uses is accepted when its
//! chain is right, and every wrong server is refused, with the TLS alert that says why.

mod common;

use common::{clock_at, fetch, provider, unknown_time, wait_for_log, Pki, Server, CA_EXTENSIONS, SERVER_EXTENSIONS};
use homemx_tls::{client_config, spki_sha256, FailureKind, TlsError, Trust, TrustError};

const HOST: &str = "smarthost.example.net";
const DAY: i64 = 86_400;

fn assert_accepted(result: Result<String, TlsError>, what: &str) {
    match result {
        Ok(answer) => assert!(answer.starts_with("HTTP/1.0 200"), "{what}: {answer}"),
        Err(error) => panic!("{what}: refused: {error:?}"),
    }
}

fn assert_refused(result: Result<String, TlsError>, kind: FailureKind, what: &str) {
    match result {
        Ok(answer) => panic!("{what}: accepted ({answer})"),
        Err(error) => assert_eq!(error.kind(), kind, "{what}: {error:?} ({})", error.describe()),
    }
}

/// RSA 2048/4096 (PKCS#1 v1.5 and PSS chains), ECDSA P-256/P-384 and Ed25519 servers, by CA
/// anchor and by pinned key.
#[test]
fn accepts_every_kind_of_server_key_by_anchor_and_by_pin() {
    let pki = Pki::new("kinds");
    pki.root("rsa-ca", "rsa:2048", "3650", CA_EXTENSIONS);
    pki.root("ec-ca", "ec:P-384", "3650", CA_EXTENSIONS);
    let cases: [(&str, &str, &str, &[&str]); 6] = [
        ("rsa2048", "rsa:2048", "rsa-ca", &[]),
        ("rsa2048-pss-signed", "rsa:2048", "rsa-ca", &["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]),
        ("rsa4096", "rsa:4096", "rsa-ca", &[]),
        ("p256", "ec:P-256", "ec-ca", &[]),
        ("p384", "ec:P-384", "ec-ca", &["-sha384"]),
        ("ed25519", "ed25519", "ec-ca", &[]),
    ];
    for (name, kind, issuer, options) in cases {
        pki.issue(name, kind, HOST, issuer, SERVER_EXTENSIONS, "30", options);
        let server = Server::start(&pki, name, name, None);
        let anchor = pki.read_der(issuer);
        assert_accepted(fetch(server.port, HOST, Trust::CaAnchor(&anchor), clock_at(0)), &format!("{name} by anchor"));
        let pin = spki_sha256(&pki.read_der(name)).unwrap();
        assert_accepted(fetch(server.port, HOST, Trust::PinnedKey(pin), unknown_time()), &format!("{name} by pin"));
    }
}

/// Wrong name, wrong dates, unknown time, self-signed, wrong key: refused, and the server is
/// told why with the proper alert (not a stray record).
#[test]
fn refuses_every_wrong_server_with_the_proper_alert() {
    let pki = Pki::new("wrong");
    pki.root("ca", "ec:P-256", "3650", CA_EXTENSIONS);
    pki.issue("leaf", "ec:P-256", HOST, "ca", SERVER_EXTENSIONS, "30", &[]);
    pki.root("self", "ec:P-256", "30", &format!("[v3]\n{SERVER_EXTENSIONS}\n"));
    let anchor = pki.read_der("ca");
    let pin = spki_sha256(&pki.read_der("leaf")).unwrap();
    assert_ne!(Some(pin), spki_sha256(&pki.read_der("self")));

    let good = Server::start(&pki, "leaf", "leaf", None);
    assert_accepted(fetch(good.port, HOST, Trust::CaAnchor(&anchor), clock_at(0)), "the right server");
    assert_refused(fetch(good.port, "mail.other.example", Trust::CaAnchor(&anchor), clock_at(0)), FailureKind::Certificate, "wrong name");
    assert!(wait_for_log(&good, "bad certificate"), "wrong name alert: {}", good.log());
    assert_refused(fetch(good.port, HOST, Trust::CaAnchor(&anchor), clock_at(60 * DAY)), FailureKind::Certificate, "expired");
    assert!(wait_for_log(&good, "certificate expired"), "expired alert: {}", good.log());
    assert_refused(fetch(good.port, HOST, Trust::CaAnchor(&anchor), clock_at(-2 * DAY)), FailureKind::Certificate, "not yet valid");
    let mut wrong_pin = pin;
    wrong_pin[31] ^= 1;
    assert_refused(fetch(good.port, HOST, Trust::PinnedKey(wrong_pin), clock_at(0)), FailureKind::Certificate, "wrong pin");
    assert!(wait_for_log(&good, "unknown ca"), "wrong pin alert: {}", good.log());
    assert!(!good.log().contains("wrong version number"), "{}", good.log());
    assert_eq!(
        client_config(&provider(), unknown_time(), Trust::CaAnchor(&anchor)).err(),
        Some(TrustError::TimeUnknown),
        "a CA anchor without the time"
    );
    drop(good);

    let impostor = Server::start(&pki, "self", "self", None);
    assert_refused(fetch(impostor.port, HOST, Trust::CaAnchor(&anchor), clock_at(0)), FailureKind::Certificate, "self-signed");
    assert!(wait_for_log(&impostor, "unknown ca"), "self-signed alert: {}", impostor.log());
    assert_refused(fetch(impostor.port, HOST, Trust::PinnedKey(pin), clock_at(0)), FailureKind::Certificate, "another key");
}

/// RFC 5280 path rules: only real CAs issue, path lengths hold, dates hold for every link,
/// the anchor included, names come from SANs, and the leaf is for server authentication.
#[test]
fn enforces_the_path_rules() {
    let pki = Pki::new("paths");
    pki.root("ca", "ec:P-256", "3650", CA_EXTENSIONS);
    let anchor = pki.read_der("ca");
    let intermediate = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign";
    let check = |leaf: &str, chain: Option<&str>, accepted: bool, what: &str, offset_days: i64| {
        let server = Server::start(&pki, leaf, leaf, chain);
        let result = fetch(server.port, HOST, Trust::CaAnchor(&anchor), clock_at(offset_days * DAY));
        if accepted {
            assert_accepted(result, what);
        } else {
            assert_refused(result, FailureKind::Certificate, what);
        }
    };

    // A proper intermediate: accepted (the control for the cases below).
    pki.issue("good-intermediate", "ec:P-256", "good intermediate", "ca", intermediate, "30", &[]);
    pki.issue("good-leaf", "ec:P-256", HOST, "good-intermediate", SERVER_EXTENSIONS, "30", &[]);
    pki.chain("good-chain", &["good-intermediate"]);
    check("good-leaf", Some("good-chain"), true, "leaf under a proper intermediate", 0);

    // A leaf (CA:FALSE, digitalSignature) from the anchor's hierarchy acting as a CA.
    pki.issue("fake-intermediate", "ec:P-256", "some server", "ca", "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature", "30", &[]);
    pki.issue("fake-leaf", "ec:P-256", HOST, "fake-intermediate", SERVER_EXTENSIONS, "30", &[]);
    pki.chain("fake-chain", &["fake-intermediate"]);
    check("fake-leaf", Some("fake-chain"), false, "a CA:FALSE certificate as issuer", 0);

    // An issuer without basicConstraints at all.
    pki.issue("bare-intermediate", "ec:P-256", "bare", "ca", "keyUsage=critical,keyCertSign", "30", &[]);
    pki.issue("bare-leaf", "ec:P-256", HOST, "bare-intermediate", SERVER_EXTENSIONS, "30", &[]);
    pki.chain("bare-chain", &["bare-intermediate"]);
    check("bare-leaf", Some("bare-chain"), false, "an issuer without basicConstraints", 0);

    // CA:TRUE but its keyUsage forbids certificate signing.
    pki.issue("nosign-intermediate", "ec:P-256", "no sign", "ca", "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature", "30", &[]);
    pki.issue("nosign-leaf", "ec:P-256", HOST, "nosign-intermediate", SERVER_EXTENSIONS, "30", &[]);
    pki.chain("nosign-chain", &["nosign-intermediate"]);
    check("nosign-leaf", Some("nosign-chain"), false, "an issuer without keyCertSign", 0);

    // Path length: an intermediate with pathlen:0 under which another CA issues the leaf.
    pki.issue("pathlen-intermediate", "ec:P-256", "pathlen zero", "ca", "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign", "30", &[]);
    pki.issue("pathlen-sub", "ec:P-256", "too deep", "pathlen-intermediate", intermediate, "30", &[]);
    pki.issue("pathlen-leaf", "ec:P-256", HOST, "pathlen-sub", SERVER_EXTENSIONS, "30", &[]);
    pki.chain("pathlen-chain", &["pathlen-sub", "pathlen-intermediate"]);
    check("pathlen-leaf", Some("pathlen-chain"), false, "a path longer than pathlen allows", 0);

    // An intermediate that expired (1 day) while the leaf (30 days) and anchor are valid.
    pki.issue("short-intermediate", "ec:P-256", "short lived", "ca", intermediate, "1", &[]);
    pki.issue("short-leaf", "ec:P-256", HOST, "short-intermediate", SERVER_EXTENSIONS, "30", &[]);
    pki.chain("short-chain", &["short-intermediate"]);
    check("short-leaf", Some("short-chain"), true, "intermediate still valid", 0);
    check("short-leaf", Some("short-chain"), false, "an expired intermediate", 5);

    // The name in the CN only, with a SAN for another name.
    pki.issue("cn-leaf", "ec:P-256", HOST, "ca", "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:other.example.net", "30", &[]);
    check("cn-leaf", None, false, "the name only in the CN, another in the SAN", 0);

    // A leaf for client authentication only.
    pki.issue("client-leaf", "ec:P-256", HOST, "ca", "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:smarthost.example.net", "30", &[]);
    check("client-leaf", None, false, "a leaf without serverAuth", 0);
}

/// The anchor's own validity is checked (webpki alone trusts an expired anchor).
#[test]
fn refuses_an_expired_anchor() {
    let pki = Pki::new("anchor");
    pki.root("short-ca", "ec:P-256", "1", CA_EXTENSIONS);
    pki.issue("leaf", "ec:P-256", HOST, "short-ca", SERVER_EXTENSIONS, "30", &[]);
    let anchor = pki.read_der("short-ca");
    let server = Server::start(&pki, "leaf", "leaf", None);
    assert_accepted(fetch(server.port, HOST, Trust::CaAnchor(&anchor), clock_at(0)), "anchor valid");
    assert_refused(fetch(server.port, HOST, Trust::CaAnchor(&anchor), clock_at(5 * DAY)), FailureKind::Certificate, "anchor expired");
}

#[test]
fn spki_hash_matches_openssl() {
    let pki = Pki::new("spki");
    pki.root("ca", "ec:P-256", "30", CA_EXTENSIONS);
    pki.openssl(&["x509", "-in", "ca.pem", "-pubkey", "-noout", "-out", "ca.pub"]);
    pki.openssl(&["pkey", "-pubin", "-in", "ca.pub", "-outform", "der", "-out", "ca.spki"]);
    let spki = std::fs::read(pki.directory.join("ca.spki")).unwrap();
    use sha2::Digest;
    let expected: [u8; 32] = sha2::Sha256::digest(&spki).into();
    assert_eq!(spki_sha256(&pki.read_der("ca")), Some(expected));
}

/// A server that completes TLS 1.3 without Certificate and CertificateVerify (the rogue peer
/// of the end-to-end tests, `qemu/peers/rogue_tls_server.py`): refused in both trust modes,
/// before the client's Finished, and not one byte of application data is sent.
#[test]
fn refuses_a_server_that_presents_no_certificate() {
    let pki = Pki::new("absent");
    pki.root("ca", "ec:P-256", "30", CA_EXTENSIONS);
    pki.issue("leaf", "ec:P-256", HOST, "ca", SERVER_EXTENSIONS, "30", &[]);
    let anchor = pki.read_der("ca");
    let pin = spki_sha256(&pki.read_der("leaf")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = pki.directory.join("rogue.jsonl");
    let ready = pki.directory.join("rogue.ready");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../qemu/peers/rogue_tls_server.py");
    let mut rogue = std::process::Command::new("python3")
        .arg(script)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--mode", "https", "--hostname", HOST])
        .arg("--log")
        .arg(&log)
        .arg("--ready-file")
        .arg(&ready)
        .spawn()
        .expect("python3 runs the rogue server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !ready.exists() {
        assert!(std::time::Instant::now() < deadline, "the rogue server did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for (trust, clock, what) in [
        (Trust::CaAnchor(&anchor), clock_at(0), "CA anchor"),
        (Trust::PinnedKey(pin), unknown_time(), "pinned key"),
    ] {
        match fetch(port, HOST, trust, clock) {
            Ok(answer) => panic!("{what}: a server without a certificate was accepted ({answer})"),
            Err(error) => {
                assert_eq!(error.kind(), FailureKind::Certificate, "{what}: {error:?}");
                assert!(
                    matches!(error, TlsError::Protocol(rustls::Error::InappropriateHandshakeMessage { .. })),
                    "{what}: refused for the wrong reason (the rogue's key schedule?): {error:?}"
                );
            }
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = rogue.kill();
    let _ = rogue.wait();
    let events = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(events.contains("server_finished"), "the rogue's flight went out: {events}");
    assert!(!events.contains("\"tls_established\""), "no handshake completed: {events}");
    assert!(!events.contains("\"tls_data\""), "nothing sent after the handshake: {events}");
    assert!(!events.contains("client_finished"), "the client never sent its Finished: {events}");
}

/// A caller that has not read everything yet can still write: a second record that arrived
/// meanwhile waits, and encryption is not blocked behind it.
#[test]
fn writes_while_received_data_waits_unread() {
    use std::io::Write as _;
    let pki = Pki::new("unread");
    pki.root("ca", "ec:P-256", "30", CA_EXTENSIONS);
    pki.issue("leaf", "ec:P-256", HOST, "ca", SERVER_EXTENSIONS, "30", &[]);
    let anchor = pki.read_der("ca");
    // A TLS 1.3 server that sends two records, then answers what it reads.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let script = format!(
        "import socket, ssl, time\n\
         context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
         context.minimum_version = ssl.TLSVersion.TLSv1_3\n\
         context.load_cert_chain('{dir}/leaf.pem', '{dir}/leaf.key')\n\
         server = socket.create_server(('127.0.0.1', {port}))\n\
         connection, _ = server.accept()\n\
         tls = context.wrap_socket(connection, server_side=True)\n\
         tls.sendall(b'first\\r\\n')\n\
         time.sleep(0.2)\n\
         tls.sendall(b'second\\r\\n')\n\
         tls.sendall(b'got ' + tls.recv(16) + b'\\r\\n')\n\
         time.sleep(1)\n",
        dir = pki.directory.display()
    );
    let mut server = std::process::Command::new("python3").args(["-c", &script]).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut socket = loop {
        if let Ok(socket) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            break socket;
        }
        assert!(std::time::Instant::now() < deadline, "the server did not listen");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    socket.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let config = homemx_tls::client_config(&provider(), clock_at(0), Trust::CaAnchor(&anchor)).unwrap();
    let mut incoming = vec![0u8; homemx_tls::RECORD_BUFFER];
    let mut outgoing = vec![0u8; 4096];
    let mut client = homemx_tls::TlsClient::new(config, HOST, &mut incoming, &mut outgoing).unwrap();
    common::pump(&mut client, &mut socket, |client| client.plaintext().ends_with(b"second\r\n")).unwrap();
    assert_eq!(client.plaintext(), b"first\r\nsecond\r\n", "both records kept, none consumed");
    assert_eq!(client.write(b"more").unwrap(), 4, "writing is not blocked by unread data");
    socket.write_all(client.output()).unwrap();
    let count = client.output().len();
    client.output_sent(count);
    common::pump(&mut client, &mut socket, |client| client.plaintext().ends_with(b"got more\r\n")).unwrap();
    assert_eq!(client.plaintext(), b"first\r\nsecond\r\ngot more\r\n");
    let _ = server.kill();
    let _ = server.wait();
}

/// `min_tls = "1.2"`: a TLS 1.2-only server (ECDSA or RSA key) is accepted with an ECDHE + AEAD
/// suite, by anchor and by pin, the server's ServerKeyExchange signature checked; AES-only
/// servers work (AES-128-GCM, and AES-256-GCM with the SHA-384 PRF); a server with only CBC
/// suites is refused, and so is every TLS 1.2 server when the service requires TLS 1.3.
#[test]
fn speaks_tls12_only_when_the_service_allows_it() {
    use homemx_tls::{client_config_with_minimum, MinimumTls};
    let pki = Pki::new("tls12");
    pki.root("ca", "ec:P-256", "3650", CA_EXTENSIONS);
    pki.issue("p256", "ec:P-256", HOST, "ca", SERVER_EXTENSIONS, "30", &[]);
    pki.issue("rsa", "rsa:2048", HOST, "ca", SERVER_EXTENSIONS, "30", &[]);
    let anchor = pki.read_der("ca");
    let cases: [(&str, &[&str], &str); 5] = [
        ("p256", &["-tls1_2"], "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
        ("rsa", &["-tls1_2"], "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
        ("p256", &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
        ("p256", &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"], "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
        ("rsa", &["-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"], "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    ];
    for (leaf, options, expected_suite) in cases {
        let server = Server::start_with(&pki, leaf, leaf, None, options);
        let what = format!("{leaf} {options:?}");
        let config = client_config_with_minimum(&provider(), clock_at(0), Trust::CaAnchor(&anchor), MinimumTls::Tls12).unwrap();
        let (answer, version, suite) = common::fetch_with(server.port, HOST, config).unwrap_or_else(|error| panic!("{what}: {error:?}"));
        assert!(answer.starts_with("HTTP/1.0 200"), "{what}: {answer}");
        assert_eq!((version, suite), ("TLSv1.2", expected_suite), "{what}");
        let pin = spki_sha256(&pki.read_der(leaf)).unwrap();
        let config = client_config_with_minimum(&provider(), unknown_time(), Trust::PinnedKey(pin), MinimumTls::Tls12).unwrap();
        assert!(common::fetch_with(server.port, HOST, config).is_ok(), "{what} by pin");
        // The same server for a service that requires TLS 1.3 (the default of client_config).
        let result = fetch(server.port, HOST, Trust::CaAnchor(&anchor), clock_at(0));
        assert!(result.is_err(), "{what}: a TLS 1.2 server accepted by a TLS 1.3-only service");
        let config = client_config_with_minimum(&provider(), clock_at(0), Trust::CaAnchor(&anchor), MinimumTls::Tls13).unwrap();
        assert!(common::fetch_with(server.port, HOST, config).is_err(), "{what}: MinimumTls::Tls13");
    }
    // TLS 1.2 does not weaken the certificate checks: another name is refused.
    let server = Server::start_with(&pki, "p256", "p256", None, &["-tls1_2"]);
    let config = client_config_with_minimum(&provider(), clock_at(0), Trust::CaAnchor(&anchor), MinimumTls::Tls12).unwrap();
    let error = common::fetch_with(server.port, "mail.other.example", config).unwrap_err();
    assert_eq!(error.kind(), FailureKind::Certificate, "wrong name over TLS 1.2: {error:?}");
    // With TLS 1.2 allowed, a TLS 1.3 server still gets TLS 1.3.
    let modern = Server::start(&pki, "p256", "p256", None);
    let config = client_config_with_minimum(&provider(), clock_at(0), Trust::CaAnchor(&anchor), MinimumTls::Tls12).unwrap();
    let (_, version, suite) = common::fetch_with(modern.port, HOST, config).unwrap();
    assert_eq!((version, suite), ("TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256"));
    // A server with CBC suites only: nothing in common.
    let cbc = Server::start_with(&pki, "p256", "p256", None, &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384"]);
    let config = client_config_with_minimum(&provider(), clock_at(0), Trust::CaAnchor(&anchor), MinimumTls::Tls12).unwrap();
    let error = common::fetch_with(cbc.port, HOST, config).unwrap_err();
    assert_eq!(error.kind(), FailureKind::PeerAlert, "CBC-only server: {error:?}");
}
