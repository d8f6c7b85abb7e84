//! The TLS server ([`homemx_tls::TlsServer`]) against independent clients: rustls's std client
//! on ring's cryptography (in memory) and `openssl s_client` (over 127.0.0.1), TLS 1.3 and 1.2,
//! with the negotiated version and suite asserted on both ends and plaintext both ways; our
//! own client against it; and the inputs a server on the Internet gets: garbage, truncated
//! handshakes, alerts, corrupted flights, records split at every byte, TLS 1.1 and CBC-only
//! ClientHellos. Certificates are made by the openssl CLI for each run.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{clock_at, provider, Pki, CA_EXTENSIONS, SERVER_EXTENSIONS};
use homemx_tls::{server_config, EcdsaP256SigningKey, InboundFailure, ServerConfigError, TlsError, TlsServer, RECORD_BUFFER, SERVER_OUTGOING_BUFFER};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, ClientConnection, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

const HOST: &str = "smarthost.example.net";
/// The server's output room, as the firmware gives it: one record at a time.
const OUTGOING: usize = SERVER_OUTGOING_BUFFER;

/// A CA and a P-256 leaf for HOST issued by it.
struct Identity {
    pki: Pki,
    config: Arc<ServerConfig>,
}

fn identity(label: &str) -> Identity {
    let pki = Pki::new(label);
    pki.root("ca", "ec:P-256", "3650", CA_EXTENSIONS);
    pki.issue("leaf", "ec:P-256", HOST, "ca", SERVER_EXTENSIONS, "30", &[]);
    let key = EcdsaP256SigningKey::from_pkcs8_der(&pki.key_der("leaf")).unwrap();
    let chain = vec![CertificateDer::from(pki.read_der("leaf"))];
    let config = server_config(&provider(), clock_at(0), chain, key).unwrap();
    Identity { pki, config }
}

/// rustls's std client on ring, limited to `versions` and `suites`, trusting the test CA.
fn ring_client(identity: &Identity, versions: &[&'static SupportedProtocolVersion], suites: &[SupportedCipherSuite]) -> ClientConnection {
    ring_client_trusting(&identity.pki.read_der("ca"), versions, suites)
}

/// The same trusting `anchor`.
fn ring_client_trusting(anchor: &[u8], versions: &[&'static SupportedProtocolVersion], suites: &[SupportedCipherSuite]) -> ClientConnection {
    let mut ring = rustls::crypto::ring::default_provider();
    ring.cipher_suites = suites.to_vec();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(anchor.to_vec())).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(ring))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    ClientConnection::new(Arc::new(config), HOST.try_into().unwrap()).unwrap()
}

/// What the client has to send.
fn client_records(client: &mut ClientConnection) -> Vec<u8> {
    let mut bytes = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut bytes).unwrap();
    }
    bytes
}

/// Feeds `bytes` to the server in pieces of at most `piece` octets, moving decrypted data into
/// `sink` as it arrives (the server holds at most two records of it).
fn deliver(server: &mut TlsServer<'_>, bytes: &[u8], piece: usize, sink: &mut Vec<u8>) -> Result<(), TlsError> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let room = server.receive_buffer();
        let count = rest.len().min(piece).min(room.len());
        assert!(count > 0, "the server's receive buffer is full");
        room[..count].copy_from_slice(&rest[..count]);
        rest = &rest[count..];
        server.received(count)?;
        sink.extend_from_slice(server.plaintext());
        let taken = server.plaintext().len();
        server.consume(taken);
    }
    Ok(())
}

/// Everything the server has to send: its output until empty (sending lets it encode the
/// records that did not fit, as the firmware's loop does).
fn drain(server: &mut TlsServer<'_>) -> Vec<u8> {
    let mut records = Vec::new();
    while !server.output().is_empty() {
        records.extend_from_slice(server.output());
        let count = server.output().len();
        server.output_sent(count);
    }
    records
}

/// Moves the server's records to the client.
fn server_to_client(server: &mut TlsServer<'_>, client: &mut ClientConnection) -> Result<(), rustls::Error> {
    let records = drain(server);
    let mut reader = &records[..];
    while !reader.is_empty() {
        client.read_tls(&mut reader).unwrap();
        client.process_new_packets()?;
    }
    Ok(())
}

/// Runs the handshake in memory, the client's records delivered in pieces of `piece` octets.
fn handshake(server: &mut TlsServer<'_>, client: &mut ClientConnection, piece: usize) -> Result<(), TlsError> {
    let mut sink = Vec::new();
    for _ in 0..10 {
        let records = client_records(client);
        deliver(server, &records, piece, &mut sink)?;
        server_to_client(server, client).map_err(|error| panic!("the client refused: {error:?}")).unwrap();
        if server.is_open() && !client.is_handshaking() {
            assert!(sink.is_empty(), "no application data during the handshake");
            return Ok(());
        }
    }
    panic!("the handshake did not finish");
}

/// Sends `request` from the client and `reply` from the server; returns what each received.
fn exchange(server: &mut TlsServer<'_>, client: &mut ClientConnection, request: &[u8], reply: &[u8]) -> (Vec<u8>, Vec<u8>) {
    client.writer().write_all(request).unwrap();
    let mut at_server = Vec::new();
    let records = client_records(client);
    deliver(server, &records, RECORD_BUFFER, &mut at_server).unwrap();
    let mut at_client = Vec::new();
    let mut rest = reply;
    while !rest.is_empty() {
        let written = server.write(rest).unwrap();
        assert!(written > 0, "output room for a record");
        rest = &rest[written..];
        server_to_client(server, client).unwrap();
        let mut chunk = vec![0u8; 65536];
        while let Ok(count) = client.reader().read(&mut chunk) {
            if count == 0 {
                break;
            }
            at_client.extend_from_slice(&chunk[..count]);
        }
    }
    (at_server, at_client)
}

fn pattern(length: usize, seed: u8) -> Vec<u8> {
    (0..length).map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// TLS 1.3 and 1.2 against an independent implementation: ChaCha20-Poly1305 chosen over a
/// client that prefers AES, AES-GCM for an AES-only client (both sizes, so the SHA-384 PRF and
/// key schedule run too); a small and a 40 KB message each way; close_notify.
#[test]
fn serves_tls13_and_tls12_to_rustls_on_ring() {
    use rustls::crypto::ring::cipher_suite as ring;
    let identity = identity("ring");
    let tls13: &[&'static SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let tls12: &[&'static SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let cases: [(&[&'static SupportedProtocolVersion], Vec<SupportedCipherSuite>, &str, &str); 6] = [
        (tls13, rustls::crypto::ring::DEFAULT_CIPHER_SUITES.to_vec(), "TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256"),
        (tls13, vec![ring::TLS13_AES_256_GCM_SHA384, ring::TLS13_AES_128_GCM_SHA256], "TLSv1.3", "TLS_AES_128_GCM_SHA256"),
        (tls13, vec![ring::TLS13_AES_256_GCM_SHA384], "TLSv1.3", "TLS_AES_256_GCM_SHA384"),
        (tls12, rustls::crypto::ring::DEFAULT_CIPHER_SUITES.to_vec(), "TLSv1.2", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
        (
            tls12,
            vec![ring::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, ring::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256],
            "TLSv1.2",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ),
        (tls12, vec![ring::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384], "TLSv1.2", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    ];
    for (versions, suites, expected_version, expected_suite) in cases {
        let what = format!("{expected_version} {expected_suite}");
        let mut client = ring_client(&identity, versions, &suites);
        let (mut incoming, mut outgoing) = (vec![0u8; RECORD_BUFFER], vec![0u8; OUTGOING]);
        let mut server = TlsServer::new(identity.config.clone(), &mut incoming, &mut outgoing).unwrap();
        assert!(server.output().is_empty() && server.is_handshaking());
        handshake(&mut server, &mut client, RECORD_BUFFER).unwrap_or_else(|error| panic!("{what}: {error:?}"));
        assert_eq!((server.version_name(), server.suite_name()), (expected_version, expected_suite), "{what}: the server's view");
        let client_suite = client.negotiated_cipher_suite().unwrap().suite().as_str().unwrap().replace("TLS13_", "TLS_");
        assert_eq!(client_suite, expected_suite, "{what}: the client's view");
        assert_eq!(client.protocol_version().unwrap().as_str().unwrap().replace("TLSv1_", "TLSv1."), expected_version);

        let (at_server, at_client) = exchange(&mut server, &mut client, b"EHLO client.example\r\n", b"250 smarthost.example.net\r\n");
        assert_eq!(at_server, b"EHLO client.example\r\n", "{what}");
        assert_eq!(at_client, b"250 smarthost.example.net\r\n", "{what}");
        let (request, reply) = (pattern(40_000, 1), pattern(40_000, 2));
        let (at_server, at_client) = exchange(&mut server, &mut client, &request, &reply);
        assert!(at_server == request, "{what}: 40 KB to the server");
        assert!(at_client == reply, "{what}: 40 KB to the client");

        client.send_close_notify();
        let records = client_records(&mut client);
        deliver(&mut server, &records, RECORD_BUFFER, &mut Vec::new()).unwrap();
        assert!(server.peer_closed(), "{what}: close_notify seen");
        server.close().unwrap();
        server_to_client(&mut server, &mut client).unwrap();
        assert!(client.process_new_packets().unwrap().peer_has_closed(), "{what}: the client saw the server's close_notify");
    }
}

/// The extensions of an intermediate CA.
const INTERMEDIATE_EXTENSIONS: &str = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash";

/// A chain near the largest the store keeps (its `MAX_CHAIN_DER`, 6 KiB: a P-256 leaf under
/// an RSA-3072 and two RSA-4096 intermediates and an RSA-4096 root, 5.9 KB) goes out through the outgoing
/// buffer the firmware gives a session, [`SERVER_OUTGOING_BUFFER`], a record at a time: the
/// pump pauses when the next record may not fit and resumes once the caller sent what it has
/// (without that rustls's second record finds no room and the handshake fails with
/// `BufferTooSmall`). TLS 1.3 and 1.2 (whose Certificate message is not encrypted); the
/// client receives the whole chain, and then 40 KB of data in records that fit the buffer.
#[test]
fn sends_the_largest_chain_a_record_at_a_time() {
    let pki = Pki::new("long-chain");
    pki.root("ca", "rsa:4096", "3650", CA_EXTENSIONS);
    pki.issue("upper", "rsa:4096", "upper intermediate", "ca", INTERMEDIATE_EXTENSIONS, "3650", &[]);
    pki.issue("middle", "rsa:4096", "middle intermediate", "upper", INTERMEDIATE_EXTENSIONS, "3650", &[]);
    pki.issue("lower", "rsa:3072", "lower intermediate", "middle", INTERMEDIATE_EXTENSIONS, "3650", &[]);
    pki.issue("leaf", "ec:P-256", HOST, "lower", SERVER_EXTENSIONS, "30", &[]);
    let chain: Vec<CertificateDer<'static>> = ["leaf", "lower", "middle", "upper", "ca"].iter().map(|name| CertificateDer::from(pki.read_der(name))).collect();
    let size: usize = chain.iter().map(|certificate| certificate.len()).sum();
    assert!(size > 5 * 1024 && size <= 6 * 1024, "a chain of {size} octets: near the store's limit");
    let key = EcdsaP256SigningKey::from_pkcs8_der(&pki.key_der("leaf")).unwrap();
    let config = server_config(&provider(), clock_at(0), chain.clone(), key).unwrap();
    let identity = Identity { pki, config };
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let mut client = ring_client(&identity, versions, rustls::crypto::ring::DEFAULT_CIPHER_SUITES);
        let (mut incoming, mut outgoing) = buffers();
        let mut server = new_server(&identity, &mut incoming, &mut outgoing);
        let mut batches = 0;
        for _ in 0..10 {
            deliver(&mut server, &client_records(&mut client), RECORD_BUFFER, &mut Vec::new()).unwrap();
            while !server.output().is_empty() {
                assert!(server.output().len() <= SERVER_OUTGOING_BUFFER);
                let records = server.output().to_vec();
                server.output_sent(records.len());
                batches += 1;
                let mut reader = &records[..];
                while !reader.is_empty() {
                    client.read_tls(&mut reader).unwrap();
                    client.process_new_packets().unwrap_or_else(|error| panic!("{versions:?}: the client refused: {error:?}"));
                }
            }
            if server.is_open() && !client.is_handshaking() {
                break;
            }
        }
        assert!(server.is_open() && !client.is_handshaking(), "{versions:?}: handshake");
        assert!(batches > size / SERVER_OUTGOING_BUFFER, "{versions:?}: the flight went out in {batches} pieces");
        assert_eq!(client.peer_certificates().unwrap(), &chain[..], "{versions:?}: the whole chain received");
        let reply = pattern(40_000, 3);
        let (_, at_client) = exchange(&mut server, &mut client, b"DATA\r\n", &reply);
        assert!(at_client == reply, "{versions:?}: 40 KB to the client");
    }
}

/// Our own client ([`homemx_tls::TlsClient`]) against our server: TLS 1.3 when allowed, and
/// the same connection works with `MinimumTls::Tls12` (TLS 1.3 is still chosen).
#[test]
fn serves_our_own_client() {
    use homemx_tls::{client_config_with_minimum, MinimumTls, TlsClient, Trust};
    let identity = identity("own");
    let anchor = identity.pki.read_der("ca");
    for minimum in [MinimumTls::Tls13, MinimumTls::Tls12] {
        let config = client_config_with_minimum(&provider(), clock_at(0), Trust::CaAnchor(&anchor), minimum).unwrap();
        let (mut client_in, mut client_out) = (vec![0u8; RECORD_BUFFER], vec![0u8; 4096]);
        let mut client = TlsClient::new(config, HOST, &mut client_in, &mut client_out).unwrap();
        let (mut incoming, mut outgoing) = (vec![0u8; RECORD_BUFFER], vec![0u8; OUTGOING]);
        let mut server = TlsServer::new(identity.config.clone(), &mut incoming, &mut outgoing).unwrap();
        for _ in 0..10 {
            let records = client.output().to_vec();
            client.output_sent(records.len());
            deliver(&mut server, &records, RECORD_BUFFER, &mut Vec::new()).unwrap();
            let records = drain(&mut server);
            if !records.is_empty() {
                client.receive_buffer()[..records.len()].copy_from_slice(&records);
                client.received(records.len()).unwrap();
            }
            if client.is_open() && server.is_open() {
                break;
            }
        }
        assert!(client.is_open() && server.is_open(), "{minimum:?}: handshake");
        assert_eq!((server.version_name(), server.suite_name()), ("TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256"));
        assert_eq!(client.write(b"QUIT\r\n").unwrap(), 6);
        let records = client.output().to_vec();
        client.output_sent(records.len());
        let mut at_server = Vec::new();
        deliver(&mut server, &records, RECORD_BUFFER, &mut at_server).unwrap();
        assert_eq!(at_server, b"QUIT\r\n");
        assert_eq!(server.write(b"221 bye\r\n").unwrap(), 9);
        let records = drain(&mut server);
        client.receive_buffer()[..records.len()].copy_from_slice(&records);
        client.received(records.len()).unwrap();
        assert_eq!(client.plaintext(), b"221 bye\r\n");
    }
}

/// The configuration refuses a chain that is not the key's, an empty chain, and keys of other
/// kinds (the provider loads P-256 only).
#[test]
fn configuration_checks_the_key() {
    let identity = identity("config");
    let pki = &identity.pki;
    pki.key("other", "ec:P-256");
    let other = EcdsaP256SigningKey::from_pkcs8_der(&pki.key_der("other")).unwrap();
    let chain = vec![CertificateDer::from(pki.read_der("leaf"))];
    assert_eq!(server_config(&provider(), clock_at(0), chain, other).err(), Some(ServerConfigError::KeyMismatch));
    let key = EcdsaP256SigningKey::from_pkcs8_der(&pki.key_der("leaf")).unwrap();
    assert_eq!(server_config(&provider(), clock_at(0), Vec::new(), key).err(), Some(ServerConfigError::EmptyChain));
    // SEC1 and the raw scalar give the same key as PKCS#8.
    pki.openssl(&["ec", "-in", "leaf.key", "-outform", "der", "-out", "leaf.sec1"]);
    let sec1 = EcdsaP256SigningKey::from_sec1_der(&std::fs::read(pki.directory.join("leaf.sec1")).unwrap()).unwrap();
    let pkcs8 = EcdsaP256SigningKey::from_pkcs8_der(&pki.key_der("leaf")).unwrap();
    assert_eq!(sec1.public_point(), pkcs8.public_point());
    // The provider's key loader, as rustls's `with_single_cert` uses it.
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let loader = provider().key_provider;
    assert!(loader.load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key_der("leaf")))).is_ok());
    for kind in ["ec:P-384", "rsa:2048", "ed25519"] {
        pki.key("foreign", kind);
        let error = loader.load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key_der("foreign")))).unwrap_err();
        assert!(format!("{error}").contains("P-256"), "{kind}: {error}");
        assert!(EcdsaP256SigningKey::from_pkcs8_der(&pki.key_der("foreign")).is_err(), "{kind}");
    }
    assert!(EcdsaP256SigningKey::from_scalar(&[0u8; 32]).is_err(), "zero scalar");
    assert!(EcdsaP256SigningKey::from_scalar(&[0xff; 32]).is_err(), "scalar above the order");
    let scalar = {
        let mut scalar = [0u8; 32];
        scalar[31] = 7;
        scalar
    };
    let raw = EcdsaP256SigningKey::from_scalar(&scalar).unwrap();
    use rustls::sign::SigningKey as _;
    let signer = raw.choose_scheme(&[rustls::SignatureScheme::ED25519, rustls::SignatureScheme::ECDSA_NISTP256_SHA256]).unwrap();
    assert_eq!(signer.scheme(), rustls::SignatureScheme::ECDSA_NISTP256_SHA256);
    assert!(raw.choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP384_SHA384]).is_none(), "no scheme a P-256 key cannot sign");
    // The signature verifies with the public key (through the provider's own verifier).
    let signature = signer.sign(b"message").unwrap();
    let verifier = homemx_tls::crypto::signature::ALGORITHMS.mapping[0].1[0];
    assert!(verifier.verify_signature(&raw.public_point(), b"message", &signature).is_ok());
    assert!(verifier.verify_signature(&raw.public_point(), b"messagf", &signature).is_err());
}

// ------------------------------------------------------------------------------------------
// openssl s_client over 127.0.0.1

/// What one served connection saw.
#[derive(Debug)]
struct Served {
    result: Result<(&'static str, &'static str), TlsError>,
    received: Vec<u8>,
}

/// Serves one connection on `listener`: after the handshake a greeting, then `got <line>` for
/// the first line received (and a message on `answered_signal` once it is sent), then
/// close_notify once the client closes.
fn serve_one(listener: TcpListener, config: Arc<ServerConfig>, answered_signal: std::sync::mpsc::Sender<()>) -> std::thread::JoinHandle<Served> {
    std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (mut incoming, mut outgoing) = (vec![0u8; RECORD_BUFFER], vec![0u8; OUTGOING]);
        let mut server = TlsServer::new(config, &mut incoming, &mut outgoing).unwrap();
        let mut received = Vec::new();
        let mut greeted = false;
        let mut answered = false;
        let mut signalled = false;
        for _ in 0..200 {
            if server.is_open() && !greeted {
                server.write(b"220 hello from homemx\n").unwrap();
                greeted = true;
            }
            if !answered {
                if let Some(end) = received.iter().position(|&byte| byte == b'\n') {
                    let reply = [b"got ".as_slice(), &received[..=end]].concat();
                    server.write(&reply).unwrap();
                    answered = true;
                }
            }
            let _ = socket.write_all(&drain(&mut server));
            if answered && !signalled {
                signalled = true;
                let _ = answered_signal.send(());
            }
            if server.peer_closed() {
                let _ = server.close();
                let _ = socket.write_all(server.output());
                break;
            }
            let count = match socket.read(server.receive_buffer()) {
                Ok(0) | Err(_) => break,
                Ok(count) => count,
            };
            if let Err(error) = server.received(count) {
                // The alert rustls chose goes out before the connection is dropped.
                let _ = socket.write_all(server.output());
                return Served { result: Err(error), received };
            }
            received.extend_from_slice(server.plaintext());
            let taken = server.plaintext().len();
            server.consume(taken);
        }
        let result = if server.is_open() { Ok((server.version_name(), server.suite_name())) } else { Err(TlsError::NotOpen) };
        Served { result, received }
    })
}

/// Runs `openssl s_client` with `options` against a fresh server; returns what the server saw
/// and s_client's output.
fn s_client(identity: &Identity, options: &[&str]) -> (Served, String, bool) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (answered, answer) = std::sync::mpsc::channel();
    let server = serve_one(listener, identity.config.clone(), answered);
    let mut child = Command::new("openssl")
        .current_dir(&identity.pki.directory)
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", HOST, "-CAfile", "ca.pem", "-verify_return_error", "-brief"])
        .args(options)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client runs");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"ping\n");
    // s_client sends the line after its handshake; the server answers, and once the answer is
    // back (or the handshake failed) closing stdin makes s_client close the connection.
    let mut stdout = child.stdout.take().unwrap();
    let (shown, shown_signal) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut output = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(count) = stdout.read(&mut buffer) {
            if count == 0 {
                break;
            }
            output.extend_from_slice(&buffer[..count]);
            if output.windows(4).any(|window| window == b"got ") {
                let _ = shown.send(());
            }
        }
        output
    });
    // Answered, or the server thread ended (a refused handshake drops the sender); then the
    // answer shown by s_client (closing stdin first would race its read: s_client may quit at
    // the end of its input before it read what the server sent).
    if answer.recv_timeout(Duration::from_secs(15)).is_ok() {
        let _ = shown_signal.recv_timeout(Duration::from_secs(10));
    }
    drop(stdin);
    let served = server.join().unwrap();
    let status = child.wait().unwrap();
    let mut errors = String::new();
    child.stderr.take().unwrap().read_to_string(&mut errors).unwrap();
    let output = String::from_utf8_lossy(&reader.join().unwrap()).to_string();
    (served, format!("{output}\n{errors}"), status.success())
}

/// `openssl s_client`: TLS 1.3 and 1.2 with ChaCha20-Poly1305 chosen by the server, AES-GCM
/// when s_client allows only AES, and TLS 1.1 (or older) refused with protocol_version.
#[test]
fn serves_openssl_s_client() {
    let identity = identity("s_client");
    let cases: [(&[&str], &str, &str); 5] = [
        (&["-tls1_3"], "TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256"),
        (&["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"], "TLSv1.3", "TLS_AES_128_GCM_SHA256"),
        (&["-tls1_2"], "TLSv1.2", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
        (&["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"], "TLSv1.2", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
        (&["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"], "TLSv1.2", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    ];
    for (options, version, suite) in cases {
        let (served, output, _) = s_client(&identity, options);
        assert_eq!(served.result, Ok((version, suite)), "{options:?}: {output}");
        assert!(served.received.starts_with(b"ping\n"), "{options:?}: the server got {:?}", String::from_utf8_lossy(&served.received));
        assert!(output.contains("220 hello from homemx") && output.contains("got ping"), "{options:?}: s_client got: {output}");
        assert!(output.contains(&format!("Protocol version: {version}")), "{options:?}: {output}");
        assert!(output.contains("Verification: OK"), "{options:?}: the chain verified: {output}");
    }
    // TLS 1.1 and 1.0 (Debian's openssl needs its security level lowered to send them at all).
    for old in ["-tls1_1", "-tls1"] {
        let (served, output, success) = s_client(&identity, &[old, "-cipher", "DEFAULT@SECLEVEL=0"]);
        let error = served.result.expect_err(old);
        // rustls looks for signature_algorithms (TLS 1.2's) before the version: a real TLS 1.1
        // ClientHello is refused for lacking it, with handshake_failure.
        assert_eq!(
            error,
            TlsError::Protocol(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::SignatureAlgorithmsExtensionRequired)),
            "{old}: {output}"
        );
        assert_eq!(error.inbound_kind(), InboundFailure::Incompatible);
        assert!(error.describe_inbound().starts_with("client offers neither TLS 1.3 nor TLS 1.2"));
        assert!(!success, "{old}: s_client failed");
        assert!(output.contains("alert handshake failure"), "{old}: s_client was told: {output}");
    }
    // A TLS 1.2 client offering only CBC suites.
    let (served, output, _) = s_client(&identity, &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:AES128-SHA256"]);
    let error = served.result.expect_err("CBC only");
    assert_eq!(error, TlsError::Protocol(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon)), "{output}");
    assert!(output.contains("handshake failure"), "s_client was told: {output}");
}

// ------------------------------------------------------------------------------------------
// Hostile and broken input: errors, never a panic.

fn new_server<'b>(identity: &Identity, incoming: &'b mut [u8], outgoing: &'b mut [u8]) -> TlsServer<'b> {
    TlsServer::new(identity.config.clone(), incoming, outgoing).unwrap()
}

fn buffers() -> (Vec<u8>, Vec<u8>) {
    (vec![0u8; RECORD_BUFFER], vec![0u8; OUTGOING])
}

/// A ClientHello record with `legacy_version`, the given suites and extensions.
fn client_hello(legacy_version: u16, suites: &[u16], extensions: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&legacy_version.to_be_bytes());
    body.extend_from_slice(&[0x5a; 32]);
    body.push(0);
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for suite in suites {
        body.extend_from_slice(&suite.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]);
    let mut extension_bytes = Vec::new();
    for (kind, data) in extensions {
        extension_bytes.extend_from_slice(&kind.to_be_bytes());
        extension_bytes.extend_from_slice(&(data.len() as u16).to_be_bytes());
        extension_bytes.extend_from_slice(data);
    }
    body.extend_from_slice(&(extension_bytes.len() as u16).to_be_bytes());
    body.extend_from_slice(&extension_bytes);
    let mut handshake = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![22, 3, 1, (handshake.len() >> 8) as u8, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

/// The extensions of a TLS 1.2 ECDHE client: X25519, uncompressed points, ECDSA P-256 SHA-256.
const TLS12_EXTENSIONS: [(u16, &[u8]); 3] = [(0x000a, &[0, 2, 0, 0x1d]), (0x000b, &[1, 0]), (0x000d, &[0, 2, 4, 3])];
/// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.
const ECDHE_ECDSA_AES128_GCM: u16 = 0xc02b;
/// CBC and RSA-key-transport suites: ECDHE-ECDSA-AES128-SHA, -AES256-SHA, -AES128-SHA256,
/// ECDHE-RSA-AES128-SHA, AES128-SHA, AES256-SHA256, AES128-GCM-SHA256 (RSA key transport: an
/// AEAD but no forward secrecy), DES-CBC3-SHA.
const WEAK_SUITES: [u16; 8] = [0xc009, 0xc00a, 0xc023, 0xc013, 0x002f, 0x003d, 0x009c, 0x000a];

/// Attack: a client offering only suites without AEAD or forward secrecy is refused with
/// handshake_failure; the same ClientHello with one ECDHE + AEAD suite added is answered (so the
/// refusal is about the suites).
#[test]
fn refuses_a_client_with_only_cbc_or_non_forward_secret_suites() {
    let identity = identity("cbc");
    let (mut incoming, mut outgoing) = buffers();
    let mut server = new_server(&identity, &mut incoming, &mut outgoing);
    let error = deliver(&mut server, &client_hello(0x0303, &WEAK_SUITES, &TLS12_EXTENSIONS), RECORD_BUFFER, &mut Vec::new()).unwrap_err();
    assert_eq!(error, TlsError::Protocol(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon)));
    assert_eq!(error.inbound_kind(), InboundFailure::Incompatible);
    assert_eq!(server.output(), [21, 3, 3, 0, 2, 2, 40], "a fatal handshake_failure alert for the client");

    let (mut incoming, mut outgoing) = buffers();
    let mut server = new_server(&identity, &mut incoming, &mut outgoing);
    let mut suites = WEAK_SUITES.to_vec();
    suites.push(ECDHE_ECDSA_AES128_GCM);
    deliver(&mut server, &client_hello(0x0303, &suites, &TLS12_EXTENSIONS), RECORD_BUFFER, &mut Vec::new()).unwrap();
    assert!(server.is_handshaking() && server.output().len() > 300, "ServerHello … ServerHelloDone sent");
    assert_eq!(&server.output()[9..11], [3, 3], "ServerHello for TLS 1.2");
    assert_eq!(&server.output()[43 + 1..43 + 3], ECDHE_ECDSA_AES128_GCM.to_be_bytes(), "the AEAD suite chosen");
}

/// Attack: a TLS 1.1 (and 1.0, SSL 3) ClientHello is refused with protocol_version, even when it
/// offers an AEAD suite.
#[test]
fn refuses_tls11_and_older_client_hellos() {
    let identity = identity("tls11");
    for version in [0x0302u16, 0x0301, 0x0300] {
        let (mut incoming, mut outgoing) = buffers();
        let mut server = new_server(&identity, &mut incoming, &mut outgoing);
        let hello = client_hello(version, &[ECDHE_ECDSA_AES128_GCM, 0xc013, 0x002f], &TLS12_EXTENSIONS);
        let error = deliver(&mut server, &hello, RECORD_BUFFER, &mut Vec::new()).unwrap_err();
        assert_eq!(error, TlsError::Protocol(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)), "{version:#06x}");
        assert_eq!(error.inbound_kind(), InboundFailure::Incompatible);
        assert_eq!(server.output(), [21, 3, 3, 0, 2, 2, 70], "{version:#06x}: a fatal protocol_version alert");
        assert!(server.write(b"x").is_err(), "nothing can be sent");
    }
}

/// Garbage instead of a ClientHello: plaintext SMTP, HTTP, random bytes, a record header with an
/// absurd length, an empty handshake record, an SSLv2 hello. Each is an error, never a panic.
#[test]
fn refuses_garbage_without_panicking() {
    let identity = identity("garbage");
    let mut random = vec![0u8; 600];
    for (index, byte) in random.iter_mut().enumerate() {
        *byte = (index as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0];
    }
    let mut valid_then_garbage = client_hello(0x0303, &[ECDHE_ECDSA_AES128_GCM], &TLS12_EXTENSIONS);
    let length = valid_then_garbage.len();
    valid_then_garbage[length - 3] ^= 0xff;
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("SMTP", b"EHLO client.example\r\n".to_vec()),
        ("HTTP", b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        ("random", random),
        ("huge record", vec![22, 3, 3, 0xff, 0xff, 1, 2, 3]),
        ("empty handshake", vec![22, 3, 3, 0, 0]),
        ("SSLv2 hello", vec![0x80, 0x2e, 1, 0, 2, 0, 0x15, 0, 0, 0, 0x10, 1, 0, 0x80, 3, 0, 0x80, 0, 0, 4]),
        ("broken extensions", valid_then_garbage),
        ("handshake of another type", vec![22, 3, 3, 0, 4, 2, 0, 0, 0]),
        ("application data first", vec![23, 3, 3, 0, 3, 1, 2, 3]),
    ];
    for (what, input) in inputs {
        let (mut incoming, mut outgoing) = buffers();
        let mut server = new_server(&identity, &mut incoming, &mut outgoing);
        let error = deliver(&mut server, &input, RECORD_BUFFER, &mut Vec::new()).expect_err(what);
        assert!(
            matches!(error.inbound_kind(), InboundFailure::Malformed | InboundFailure::Incompatible),
            "{what}: {error:?} ({})",
            error.describe_inbound()
        );
        assert!(!server.is_open() && !server.is_handshaking(), "{what}: the connection is over");
        // More input after the failure: the same error, no panic.
        assert_eq!(deliver(&mut server, b"more", RECORD_BUFFER, &mut Vec::new()), Err(error), "{what}");
    }
}

/// A handshake cut short at every stage (the ClientHello half sent, the client's second flight
/// half sent): the server waits, sends nothing it should not, and does not panic; the caller's
/// timeout ends it.
#[test]
fn waits_on_truncated_handshakes() {
    let identity = identity("truncated");
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let mut client = ring_client(&identity, versions, rustls::crypto::ring::DEFAULT_CIPHER_SUITES);
        let hello = client_records(&mut client);
        let (mut incoming, mut outgoing) = buffers();
        let mut server = new_server(&identity, &mut incoming, &mut outgoing);
        deliver(&mut server, &hello[..hello.len() / 2], RECORD_BUFFER, &mut Vec::new()).unwrap();
        assert!(server.is_handshaking() && server.output().is_empty(), "half a ClientHello: waiting");
        deliver(&mut server, &hello[hello.len() / 2..], RECORD_BUFFER, &mut Vec::new()).unwrap();
        assert!(!server.output().is_empty(), "the whole ClientHello: the server's flight");
        server_to_client(&mut server, &mut client).unwrap();
        let flight = client_records(&mut client);
        deliver(&mut server, &flight[..flight.len() - 1], RECORD_BUFFER, &mut Vec::new()).unwrap();
        assert!(server.is_handshaking() && !server.is_open(), "{versions:?}: the client's Finished incomplete: waiting");
        assert!(server.write(b"x").is_err(), "{versions:?}: no application data before the handshake");
    }
}

/// A client that refuses the certificate sends an alert: the server reports it as the client's
/// alert, with the reason.
#[test]
fn reports_the_clients_alert() {
    let identity = identity("alert");
    identity.pki.root("other-ca", "ec:P-256", "30", CA_EXTENSIONS);
    let other_anchor = identity.pki.read_der("other-ca");
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        // A client that trusts another CA.
        let mut client = ring_client_trusting(&other_anchor, versions, rustls::crypto::ring::DEFAULT_CIPHER_SUITES);
        let (mut incoming, mut outgoing) = buffers();
        let mut server = new_server(&identity, &mut incoming, &mut outgoing);
        deliver(&mut server, &client_records(&mut client), RECORD_BUFFER, &mut Vec::new()).unwrap();
        assert!(server_to_client(&mut server, &mut client).is_err(), "the client refuses the certificate");
        let alert = client_records(&mut client);
        let error = deliver(&mut server, &alert, RECORD_BUFFER, &mut Vec::new()).unwrap_err();
        assert_eq!(error, TlsError::Protocol(rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA)), "{versions:?}");
        assert_eq!(error.inbound_kind(), InboundFailure::ClientAlert);
        assert_eq!(error.describe_inbound(), "client refused the certificate");
    }
    // An alert instead of a ClientHello.
    let (mut incoming, mut outgoing) = buffers();
    let mut server = new_server(&identity, &mut incoming, &mut outgoing);
    let error = deliver(&mut server, &[21, 3, 3, 0, 2, 2, 40], RECORD_BUFFER, &mut Vec::new()).unwrap_err();
    assert_eq!(error.inbound_kind(), InboundFailure::ClientAlert, "{error:?}");
}

/// The analogue of the client's fatal alert with a whole flight in one record (fixed in
/// 81d76c2): the client's second flight arrives in one piece with its first message broken
/// (TLS 1.2: a ClientKeyExchange whose point length is wrong, ahead of ChangeCipherSpec and
/// Finished; TLS 1.3 and 1.2: a Finished that does not authenticate; TLS 1.3: a broken
/// ChangeCipherSpec compatibility record ahead of the Finished). The server refuses with an alert
/// in its output and does not panic.
#[test]
fn refuses_a_corrupted_client_flight_in_one_piece() {
    let identity = identity("corrupt");
    // (version, index of the octet to change from the start or end of the flight, XOR mask, what)
    let cases: [(&'static SupportedProtocolVersion, isize, u8, &str); 4] = [
        // Record header (5), handshake header (4), then the point's length octet: 32 becomes 31,
        // one octet of the point is left over (rustls sends decode_error; a length beyond the
        // message is refused without an alert).
        (&rustls::version::TLS12, 9, 0x3f, "TLS 1.2 ClientKeyExchange point length"),
        (&rustls::version::TLS12, -3, 0x55, "TLS 1.2 Finished"),
        (&rustls::version::TLS13, -3, 0x55, "TLS 1.3 Finished"),
        (&rustls::version::TLS13, 5, 0x55, "TLS 1.3 ChangeCipherSpec compatibility record"),
    ];
    for (version, position, mask, what) in cases {
        let mut client = ring_client(&identity, &[version], &[rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256, rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]);
        let (mut incoming, mut outgoing) = buffers();
        let mut server = new_server(&identity, &mut incoming, &mut outgoing);
        deliver(&mut server, &client_records(&mut client), RECORD_BUFFER, &mut Vec::new()).unwrap();
        server_to_client(&mut server, &mut client).unwrap();
        let mut flight = client_records(&mut client);
        let index = if position < 0 { flight.len() - (-position) as usize } else { position as usize };
        flight[index] ^= mask;
        let error = deliver(&mut server, &flight, RECORD_BUFFER, &mut Vec::new()).expect_err(what);
        assert!(matches!(error.inbound_kind(), InboundFailure::Malformed), "{what}: {error:?}");
        // One alert record: in plaintext (21), or under the TLS 1.3 handshake keys (23, two
        // octets of alert, the inner content type and the tag).
        let output = server.output();
        assert!(output.len() == 7 && output[0] == 21 || output.len() == 5 + 19 && output[0] == 23, "{what}: an alert for the client: {output:?}");
        assert!(!server.is_open(), "{what}");
    }
}

/// Every record of a whole conversation (both handshakes, data, close) delivered one octet at a
/// time; and the ClientHello split in two at every octet boundary.
#[test]
fn takes_records_split_at_every_byte() {
    let identity = identity("split");
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let mut client = ring_client(&identity, versions, rustls::crypto::ring::DEFAULT_CIPHER_SUITES);
        let (mut incoming, mut outgoing) = buffers();
        let mut server = new_server(&identity, &mut incoming, &mut outgoing);
        handshake(&mut server, &mut client, 1).unwrap();
        client.writer().write_all(b"DATA\r\nsome mail\r\n.\r\n").unwrap();
        let mut at_server = Vec::new();
        deliver(&mut server, &client_records(&mut client), 1, &mut at_server).unwrap();
        assert_eq!(at_server, b"DATA\r\nsome mail\r\n.\r\n", "{versions:?}");
    }
    let mut client = ring_client(&identity, &[&rustls::version::TLS13], rustls::crypto::ring::DEFAULT_CIPHER_SUITES);
    let hello = client_records(&mut client);
    let mut first_flight = None;
    for split in 1..hello.len() {
        let (mut incoming, mut outgoing) = buffers();
        let mut server = new_server(&identity, &mut incoming, &mut outgoing);
        deliver(&mut server, &hello[..split], RECORD_BUFFER, &mut Vec::new()).unwrap();
        assert!(server.output().is_empty(), "split at {split}: nothing before the whole ClientHello");
        deliver(&mut server, &hello[split..], RECORD_BUFFER, &mut Vec::new()).unwrap();
        let length = drain(&mut server).len();
        assert!(length > 300, "split at {split}: the server's flight");
        // ServerHello … Finished: the same size each time (the signature's DER length varies by an octet or two).
        let expected = *first_flight.get_or_insert(length);
        assert!(length.abs_diff(expected) <= 3, "split at {split}: {length} against {expected}");
    }
}

#[test]
fn tls_alpn_01_configuration_presents_its_certificate_only_to_acme_tls_1() {
    use homemx_tls::identity::{tls_alpn_01_certificate, DeviceKey, HostName};
    use homemx_tls::{tls_alpn_01_server_config, ACME_TLS_ALPN};
    let key = DeviceKey::generate(&mut rand_core::OsRng);
    let host = HostName::new(HOST).unwrap();
    let mut identifier = [7u8; 34];
    identifier[..2].copy_from_slice(&[0x04, 0x20]);
    let certificate = tls_alpn_01_certificate(&key, &host, &identifier, 1_767_225_600, &mut rand_core::OsRng).unwrap();
    let config = tls_alpn_01_server_config(&provider(), clock_at(0), CertificateDer::from(certificate), key.signing_key()).unwrap();
    let anchor = Pki::new("alpn");
    anchor.root("ca", "ec:P-256", "30", CA_EXTENSIONS);
    for (protocols, presents) in [(vec![], false), (vec![b"h2".to_vec()], false), (vec![b"h2".to_vec(), ACME_TLS_ALPN.to_vec()], true)] {
        let (mut incoming, mut outgoing) = buffers();
        let mut server = TlsServer::new(config.clone(), &mut incoming, &mut outgoing).unwrap();
        let mut client_config = (*ring_config(&anchor.read_der("ca"))).clone();
        client_config.alpn_protocols = protocols.clone();
        let mut client = ClientConnection::new(Arc::new(client_config), HOST.try_into().unwrap()).unwrap();
        let hello = client_records(&mut client);
        let result = deliver(&mut server, &hello, RECORD_BUFFER, &mut Vec::new());
        if presents {
            result.unwrap();
            // The validation certificate reaches the client (which, rightly, does not trust it).
            let refused = server_to_client(&mut server, &mut client).and_then(|()| {
                let records = client_records(&mut client);
                deliver(&mut server, &records, RECORD_BUFFER, &mut Vec::new()).unwrap();
                server_to_client(&mut server, &mut client)
            });
            assert!(matches!(refused, Err(rustls::Error::InvalidCertificate(_))), "{refused:?}");
        } else {
            assert!(result.is_err(), "{protocols:?}: the handshake must fail without acme-tls/1");
        }
    }
}

/// rustls's std client configuration on ring trusting `anchor`.
fn ring_config(anchor: &[u8]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(anchor.to_vec())).unwrap();
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
