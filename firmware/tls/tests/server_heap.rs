//! The server's heap per connection, measured with a counting global allocator that counts only
//! what the server's calls allocate and free (the client here is rustls's std client on ring,
//! whose allocations are not counted): the high-water mark of a handshake, what an open session
//! keeps, the high-water mark with a full 16 KB record each way, what unread records cost, and
//! nothing left after the connection is dropped. Prints the figures (`--nocapture`) and asserts
//! the bounds the boards' heaps are sized by (`homemx_board::TLS_SESSION_HEAP_BYTES`,
//! `homemx_board::SHARED_TLS_HEAP_BYTES`), with the device's own certificate and with a chain
//! near the largest the store keeps: what a session holds between calls (across the
//! firmware's awaits; the queued first flight) apart from what a call allocates and frees
//! before it returns (one call runs at a time: the hand-over); decrypted data, consumed or not,
//! takes no heap (it stays in the caller's incoming buffer); the high-water while a record is
//! handed over (rustls 0.23's own copy of its plaintext) is one record; the shared server
//! configuration holds the chain once.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{clock_at, provider, Pki, Server, CA_EXTENSIONS, SERVER_EXTENSIONS};

const HOST: &str = "smarthost.example.net";
use homemx_tls::{server_config, EcdsaP256SigningKey, TlsServer, RECORD_BUFFER};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, ClientConnection, SupportedCipherSuite, SupportedProtocolVersion};

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// The most held between the server's calls: what a session keeps across the firmware's awaits
/// (`PEAK` also counts what a call allocates and frees before it returns, which no other
/// connection can do at the same time: the firmware's tasks share one executor and a call does
/// not await).
static HELD: AtomicUsize = AtomicUsize::new(0);

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if COUNTING.with(Cell::get) {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        unsafe { System.dealloc(pointer, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` with the server's allocations counted.
fn counted<R>(f: impl FnOnce() -> R) -> R {
    COUNTING.with(|counting| counting.set(true));
    let result = f();
    COUNTING.with(|counting| counting.set(false));
    HELD.fetch_max(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    result
}

fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    HELD.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// One fill of the server's incoming buffer from `rest`, processed.
fn fill(server: &mut TlsServer<'_>, rest: &mut &[u8]) {
    let room = server.receive_buffer();
    let count = rest.len().min(room.len());
    room[..count].copy_from_slice(&rest[..count]);
    *rest = &rest[count..];
    server.received(count).unwrap();
}

fn to_server(client: &mut ClientConnection, server: &mut TlsServer<'_>) -> Vec<u8> {
    let mut bytes = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut bytes).unwrap();
    }
    let mut plaintext = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        counted(|| fill(server, &mut rest));
        // The test's own copy is not the server's heap.
        plaintext.extend_from_slice(server.plaintext());
        let taken = server.plaintext().len();
        counted(|| server.consume(taken));
    }
    plaintext
}

fn to_client(server: &mut TlsServer<'_>, client: &mut ClientConnection) {
    // Until empty: sending lets the server encode the records that did not fit.
    let mut records = Vec::new();
    while !server.output().is_empty() {
        records.extend_from_slice(server.output());
        let count = server.output().len();
        counted(|| server.output_sent(count));
    }
    let mut reader = &records[..];
    while !reader.is_empty() {
        client.read_tls(&mut reader).unwrap();
        client.process_new_packets().unwrap();
    }
}

/// The client sends four 4 KB records in one flight, which the server receives in one fill and
/// does not consume; then they are read. Returns the live heap while unread and the plaintext
/// then offered.
fn unread_records(client: &mut ClientConnection, server: &mut TlsServer<'_>) -> (usize, usize) {
    let chunk = vec![0x17u8; 4096];
    for _ in 0..4 {
        client.writer().write_all(&chunk).unwrap();
    }
    let mut bytes = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut bytes).unwrap();
    }
    let mut rest = &bytes[..];
    let held = counted(|| {
        fill(server, &mut rest);
        LIVE.load(Ordering::Relaxed)
    });
    let offered = server.plaintext().len();
    let mut read = 0;
    loop {
        let taken = server.plaintext().len();
        read += taken;
        counted(|| server.consume(taken));
        if taken == 0 {
            if rest.is_empty() {
                break;
            }
            counted(|| fill(server, &mut rest));
        }
    }
    assert_eq!(read, 4 * chunk.len(), "every record is read in the end");
    (held, offered)
}

/// The extensions of an intermediate CA.
const INTERMEDIATE_EXTENSIONS: &str = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash";

/// A self-issued-style leaf (one 441-octet certificate, as the device makes) and the largest
/// chain the store keeps (its `MAX_CHAIN_DER`, 6 KiB: here a P-256 leaf under an RSA-3072
/// and two RSA-4096 intermediates and an RSA-4096 root, 5.9 KB), whose flight rustls holds whole while it
/// goes out a record at a time.
#[test]
fn server_heap_per_connection() {
    let pki = Pki::new("heap");
    pki.root("ca", "ec:P-256", "3650", CA_EXTENSIONS);
    pki.issue("leaf", "ec:P-256", "smarthost.example.net", "ca", SERVER_EXTENSIONS, "30", &[]);
    let one = server_heap_with(&pki, &["leaf"]);
    assert!(one.held <= 4 * 1024, "one certificate: {one:?}");

    let pki = Pki::new("heap-long");
    pki.root("ca", "rsa:4096", "3650", CA_EXTENSIONS);
    pki.issue("upper", "rsa:4096", "upper intermediate", "ca", INTERMEDIATE_EXTENSIONS, "3650", &[]);
    pki.issue("middle", "rsa:4096", "middle intermediate", "upper", INTERMEDIATE_EXTENSIONS, "3650", &[]);
    pki.issue("lower", "rsa:3072", "lower intermediate", "middle", INTERMEDIATE_EXTENSIONS, "3650", &[]);
    pki.issue("leaf", "ec:P-256", "smarthost.example.net", "lower", SERVER_EXTENSIONS, "30", &[]);
    let long = server_heap_with(&pki, &["leaf", "lower", "middle", "upper", "ca"]);
    println!("largest chain: {long:?}");
    // The bounds `homemx_board::TLS_SESSION_HEAP_BYTES` and `SHARED_TLS_HEAP_BYTES` rest on,
    // carried to the store's 6 KiB limit (the flight and the configuration hold the chain once).
    let to_limit = 6 * 1024 - long.chain;
    assert!(long.held + to_limit <= SESSION_HELD_BOUND, "held between calls: {long:?}");
    assert!(long.configuration + to_limit <= 7 * 1024, "the server configuration: {long:?}");
    for figures in [one, long] {
        assert!(figures.handshake <= figures.held + HAND_OVER_BOUND, "building the flight is within the hand-over: {figures:?}");
        assert!(figures.data <= figures.held.max(figures.open) + HAND_OVER_BOUND, "a record's hand-over: {figures:?}");
    }
}

/// What rustls may hold for a session between calls (across the firmware's awaits) with the
/// largest chain: `homemx_services::inbound_tls`'s figure (9.5 KiB).
const SESSION_HELD_BOUND: usize = 9_728;
/// What one server call may allocate and free above what its session holds: one record's
/// hand-over, or the first flight's making (`homemx_board::SHARED_TLS_HEAP_BYTES`).
const HAND_OVER_BOUND: usize = 16_384 + 256;

/// One chain's largest figures over the suites (bytes of heap).
#[derive(Clone, Copy, Debug)]
struct Figures {
    /// The chain's DER octets.
    chain: usize,
    /// The shared server configuration.
    configuration: usize,
    /// Handshake high-water (within calls too).
    handshake: usize,
    /// The most held between calls during the handshake.
    held: usize,
    /// Held once open.
    open: usize,
    /// High-water with a full record each way.
    data: usize,
}

/// Measures the server's heap with the chain `names` (leaf first) of `pki` in every suite
/// case; returns the largest figures.
fn server_heap_with(pki: &Pki, names: &[&str]) -> Figures {
    let key_der = pki.key_der("leaf");
    let chain: Vec<CertificateDer<'static>> = names.iter().map(|name| CertificateDer::from(pki.read_der(name))).collect();
    let chain_octets: usize = chain.iter().map(|certificate| certificate.len()).sum();
    let provider = provider();
    let before = LIVE.load(Ordering::Relaxed);
    let config = counted(|| {
        let key = EcdsaP256SigningKey::from_pkcs8_der(&key_der).unwrap();
        server_config(&provider, clock_at(0), chain.clone(), key).unwrap()
    });
    let configuration = LIVE.load(Ordering::Relaxed) - before;
    println!("server configuration (shared by all connections; the {chain_octets}-octet chain of {} included): {configuration} B", chain.len());
    let mut largest = Figures { chain: chain_octets, configuration, handshake: 0, held: 0, open: 0, data: 0 };

    use rustls::crypto::ring::cipher_suite as ring;
    let tls13: &[&'static SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let tls12: &[&'static SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let cases: [(&[&'static SupportedProtocolVersion], SupportedCipherSuite); 4] = [
        (tls13, ring::TLS13_CHACHA20_POLY1305_SHA256),
        (tls13, ring::TLS13_AES_128_GCM_SHA256),
        (tls12, ring::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        (tls12, ring::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ];
    for (versions, suite) in cases {
        let mut ring_provider = rustls::crypto::ring::default_provider();
        ring_provider.cipher_suites = vec![suite];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(pki.read_der("ca"))).unwrap();
        let client_config = ClientConfig::builder_with_provider(Arc::new(ring_provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut client = ClientConnection::new(Arc::new(client_config), "smarthost.example.net".try_into().unwrap()).unwrap();
        // The record buffers are the caller's (static in the firmware), not heap.
        let (mut incoming, mut outgoing) = (vec![0u8; RECORD_BUFFER], vec![0u8; homemx_tls::SERVER_OUTGOING_BUFFER]);

        let start = LIVE.load(Ordering::Relaxed);
        reset_peak();
        let mut server = counted(|| TlsServer::new(config.clone(), &mut incoming, &mut outgoing).unwrap());
        for _ in 0..10 {
            to_server(&mut client, &mut server);
            to_client(&mut server, &mut client);
            if server.is_open() && !client.is_handshaking() {
                break;
            }
        }
        assert!(server.is_open());
        let handshake_peak = PEAK.load(Ordering::Relaxed) - start;
        let handshake_held = HELD.load(Ordering::Relaxed) - start;
        let open = LIVE.load(Ordering::Relaxed) - start;

        reset_peak();
        let record = vec![0x42u8; 16_384];
        client.writer().write_all(&record).unwrap();
        assert_eq!(to_server(&mut client, &mut server).len(), record.len());
        let mut written = 0;
        while written < record.len() {
            written += counted(|| server.write(&record[written..]).unwrap());
            to_client(&mut server, &mut client);
        }
        let mut echoed = vec![0u8; record.len()];
        client.reader().read_exact(&mut echoed).unwrap();
        let data_peak = PEAK.load(Ordering::Relaxed) - start;
        let open_after_data = LIVE.load(Ordering::Relaxed) - start;
        let name = format!("{} {:?}", server.version_name(), server.suite_name());
        assert!(open_after_data <= open + 256, "{name}: consumed data leaves nothing held ({open_after_data} B, open {open} B)");
        assert!(data_peak <= open + 16_384 + 1024, "{name}: a record handed over costs one copy, rustls's ({data_peak} B)");

        // Small records the caller does not read yet: one fill of the incoming buffer, in it.
        let unread = unread_records(&mut client, &mut server);
        let (unread_held, unread_plaintext) = (unread.0 - start, unread.1);
        assert_eq!(unread_plaintext, 16_384, "{name}: the four records of the fill are offered");
        assert!(
            unread_held <= open + 256,
            "{name}: unread records take no heap: they wait in the incoming buffer ({unread_held} B held, open {open} B)"
        );
        counted(|| drop(server));
        let left = LIVE.load(Ordering::Relaxed) - start;
        println!(
            "server heap, {name}: handshake high-water {handshake_peak} B, {handshake_held} B held between calls; open session {open} B; \
             with 16 KB each way high-water {data_peak} B, then {open_after_data} B held; {unread_held} B held with \
             small records unread; after drop {left} B"
        );
        assert_eq!(left, 0, "{name}: the connection's heap is all returned");
        largest.handshake = largest.handshake.max(handshake_peak);
        largest.held = largest.held.max(handshake_held);
        largest.open = largest.open.max(open);
        largest.data = largest.data.max(data_peak);
    }
    largest
}

/// The provider connection's side: the client's heap through a handshake and an answer read,
/// its configuration included (the firmware makes it for each connection), its record buffers
/// excluded (static in the firmware), with the largest chain a server (or an attacker on the
/// path, before the chain is refused) can make it take: as many certificates as its incoming
/// record buffer holds, here 15.3 KB (an RSA-4096 leaf under five RSA-4096 intermediates and
/// the RSA-4096 root, then unrelated RSA-2048 roots), which rustls keeps while it checks them.
/// What it holds between calls (across the courier's awaits: 1:1 with the chain's octets) is
/// measured apart from what a call allocates and frees before it returns (the certificate
/// checks), which is the board's one-call-at-a-time share; the board's shared heap
/// (`homemx_board::SHARED_TLS_HEAP_BYTES`) holds both.
#[test]
fn client_heap_with_an_rsa_4096_chain() {
    use homemx_tls::TlsClient;
    let pki = Pki::new("client-heap");
    pki.root("ca", "rsa:4096", "3650", CA_EXTENSIONS);
    let mut chain = Vec::new();
    for index in 0..5 {
        let name = format!("intermediate-{index}");
        pki.issue(&name, "rsa:4096", &name, chain.last().map_or("ca", String::as_str), INTERMEDIATE_EXTENSIONS, "3650", &[]);
        chain.push(name);
    }
    pki.issue("leaf", "rsa:4096", HOST, chain.last().unwrap(), SERVER_EXTENSIONS, "30", &[]);
    chain.reverse();
    chain.push("ca".into());
    for index in 0..8 {
        let name = format!("unrelated-{index}");
        pki.root(&name, "rsa:2048", "3650", CA_EXTENSIONS);
        chain.push(name);
    }
    let names: Vec<&str> = chain.iter().map(String::as_str).collect();
    let chain_octets = pki.read_der("leaf").len() + names.iter().map(|name| pki.read_der(name).len()).sum::<usize>();
    assert!((14 * 1024 + 512..16 * 1024).contains(&chain_octets), "a chain of {chain_octets} octets");
    pki.chain("chain", &names);
    let anchor = pki.read_der("ca");
    let server = Server::start(&pki, "leaf", "leaf", Some("chain"));
    let provider = provider();
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    socket.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let (mut incoming, mut outgoing) = (vec![0u8; RECORD_BUFFER], vec![0u8; 4096]);
    // The test's clock is leaked on purpose (a `'static`): made before the count.
    let clock = clock_at(0);
    let start = LIVE.load(Ordering::Relaxed);
    reset_peak();
    let config = counted(|| homemx_tls::client_config(&provider, clock, homemx_tls::Trust::CaAnchor(&anchor)).unwrap());
    let configuration = LIVE.load(Ordering::Relaxed) - start;
    // The configuration's own making allocates and frees the session cache rustls makes by
    // default with `std` (a test build), which `client_config` replaces: not the firmware's.
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    let mut client = counted(|| TlsClient::new(config, HOST, &mut incoming, &mut outgoing).unwrap());
    // The firmware's loop (`link`): send until empty, then receive; every call counted alone.
    let mut pump = |client: &mut TlsClient<'_>, done: &dyn Fn(&TlsClient<'_>) -> bool| loop {
        while !client.output().is_empty() {
            socket.write_all(client.output()).unwrap();
            let count = client.output().len();
            counted(|| client.output_sent(count));
        }
        if done(client) {
            return;
        }
        let count = socket.read(client.receive_buffer()).unwrap();
        assert!(count > 0, "the server closed");
        counted(|| client.received(count)).unwrap();
    };
    pump(&mut client, &|client| client.is_open());
    assert_eq!(counted(|| client.write(b"GET / HTTP/1.0\r\n\r\n")).unwrap(), 18);
    pump(&mut client, &|client| client.plaintext().contains(&b'\n'));
    assert!(client.plaintext().starts_with(b"HTTP/1.0 200"));
    let (version, suite) = (client.version_name(), client.suite_name());
    let peak = PEAK.load(Ordering::Relaxed) - start;
    let held = HELD.load(Ordering::Relaxed) - start;
    counted(|| drop(client));
    let left = LIVE.load(Ordering::Relaxed) - start;
    println!(
        "client heap, {version} {suite}, a {chain_octets}-octet chain, its configuration ({configuration} B) included: high-water {peak} B, \
         {held} B held between calls, {} B above that within a call; after drop {left} B",
        peak - held
    );
    // Carried to a chain as large as the incoming buffer (more than its Certificate message can
    // bring: the message must fit the buffer whole, rustls joins its records there).
    assert!(held + (RECORD_BUFFER - chain_octets) <= CLIENT_HELD_BOUND, "what the client holds across awaits: {held} B");
    assert!(peak - held <= CLIENT_CALL_BOUND, "what a call allocates and frees (the certificate checks): {} B", peak - held);
    assert_eq!(left, 0, "the connection's heap is all returned");
}

/// What the provider connection may hold across the courier's awaits, its configuration
/// included (`homemx_board::SHARED_TLS_HEAP_BYTES`).
const CLIENT_HELD_BOUND: usize = 20 * 1024 + 512;
/// What one of its calls may allocate and free above that: the handshake's call that checks
/// the chain, the largest of the board's one-call-at-a-time share
/// (`homemx_board::SHARED_TLS_HEAP_BYTES`; a server's is at most [`HAND_OVER_BOUND`]).
const CLIENT_CALL_BOUND: usize = 24 * 1024;
