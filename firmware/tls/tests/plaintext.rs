//! The record pump keeps decrypted data in the caller's incoming buffer, in front of the
//! records not yet processed (`homemx_tls::connection`'s module doc): whatever the records and
//! the fills, every octet the peer sent comes out once, in order, byte for byte. The peers are
//! rustls's std client and server on ring's cryptography, in memory; the pump is our server
//! (and, against rustls's server with its session tickets among the data, our client). Fills
//! take as much of the wire as the pump offers (or random amounts), and the data is consumed
//! in pieces; the pump's receive buffer is filled only while no plaintext waits, as the
//! firmware's callers do.

mod common;

use std::io::{Read as _, Write as _};
use std::sync::Arc;

use common::{clock_at, provider, Pki, CA_EXTENSIONS, SERVER_EXTENSIONS};
use homemx_tls::connection::{TlsConnection, Unbuffered};
use homemx_tls::{server_config, EcdsaP256SigningKey, MinimumTls, TlsClient, TlsServer, Trust, RECORD_BUFFER, SERVER_OUTGOING_BUFFER};
use rustls::crypto::ring::cipher_suite as ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection, SupportedCipherSuite, SupportedProtocolVersion};

const HOST: &str = "smarthost.example.net";
/// The outgoing buffer the board gives an inbound session.
const OUTGOING: usize = SERVER_OUTGOING_BUFFER;

/// The suites of both versions the pump meets: TLS 1.3 (one octet of content type and a
/// 16-octet tag per record) and TLS 1.2 (an explicit 8-octet nonce with AES-GCM).
fn cases() -> [(&'static [&'static SupportedProtocolVersion], SupportedCipherSuite); 4] {
    const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
    [
        (TLS13, ring::TLS13_CHACHA20_POLY1305_SHA256),
        (TLS13, ring::TLS13_AES_256_GCM_SHA384),
        (TLS12, ring::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        (TLS12, ring::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ]
}

/// A small deterministic generator (xorshift64*), for data, record sizes, fills and pieces.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// In `1..=most`.
    fn up_to(&mut self, most: usize) -> usize {
        1 + (self.next() % most as u64) as usize
    }

    fn bytes(&mut self, count: usize) -> Vec<u8> {
        (0..count).map(|_| self.next() as u8).collect()
    }
}

/// The test PKI: a CA and a P-256 leaf for HOST.
fn pki(label: &str) -> Pki {
    let pki = Pki::new(label);
    pki.root("ca", "ec:P-256", "3650", CA_EXTENSIONS);
    pki.issue("leaf", "ec:P-256", HOST, "ca", SERVER_EXTENSIONS, "30", &[]);
    pki
}

fn ring_provider(suite: SupportedCipherSuite) -> Arc<rustls::crypto::CryptoProvider> {
    let mut ring = rustls::crypto::ring::default_provider();
    ring.cipher_suites = vec![suite];
    Arc::new(ring)
}

/// rustls's client, limited to one version and suite.
fn ring_client(pki: &Pki, versions: &[&'static SupportedProtocolVersion], suite: SupportedCipherSuite) -> Connection {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pki.read_der("ca"))).unwrap();
    let config = ClientConfig::builder_with_provider(ring_provider(suite))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    ClientConnection::new(Arc::new(config), HOST.try_into().unwrap()).unwrap().into()
}

/// rustls's server, limited to one version and suite; TLS 1.3 sends its two session tickets
/// after the handshake, handshake records among the application data.
fn ring_server(pki: &Pki, versions: &[&'static SupportedProtocolVersion], suite: SupportedCipherSuite) -> Connection {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key_der("leaf")));
    let config = ServerConfig::builder_with_provider(ring_provider(suite))
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(pki.read_der("leaf"))], key)
        .unwrap();
    ServerConnection::new(Arc::new(config)).unwrap().into()
}

/// What the peer has to send.
fn peer_records(peer: &mut Connection) -> Vec<u8> {
    let mut bytes = Vec::new();
    while peer.wants_write() {
        peer.write_tls(&mut bytes).unwrap();
    }
    bytes
}

/// Moves the pump's records to the peer.
fn to_peer<C: Unbuffered>(pump: &mut TlsConnection<'_, C>, peer: &mut Connection) {
    // Until empty: sending lets the pump encode the records that did not fit.
    let mut records = Vec::new();
    while !pump.output().is_empty() {
        records.extend_from_slice(pump.output());
        let count = pump.output().len();
        pump.output_sent(count);
    }
    let mut reader = &records[..];
    while !reader.is_empty() {
        peer.read_tls(&mut reader).unwrap();
        peer.process_new_packets().unwrap();
    }
}

/// Feeds `wire` to the pump, each fill at most `fill()` octets of the room it offers, only
/// while no plaintext waits; takes the plaintext in pieces of `piece()` octets. Returns the
/// data and the most plaintext held at once.
fn transfer<C: Unbuffered>(
    pump: &mut TlsConnection<'_, C>,
    wire: &[u8],
    mut fill: impl FnMut() -> usize,
    mut piece: impl FnMut() -> usize,
) -> (Vec<u8>, usize) {
    let mut rest = wire;
    let mut data = Vec::new();
    let mut most_held = 0;
    while !rest.is_empty() || !pump.plaintext().is_empty() {
        most_held = most_held.max(pump.plaintext().len());
        if !pump.plaintext().is_empty() {
            let mut buffer = vec![0u8; piece()];
            let count = pump.read(&mut buffer);
            assert!(count > 0);
            data.extend_from_slice(&buffer[..count]);
            continue;
        }
        let room = pump.receive_buffer();
        assert!(!room.is_empty(), "no room to receive while no plaintext waits");
        let count = rest.len().min(room.len()).min(fill());
        room[..count].copy_from_slice(&rest[..count]);
        rest = &rest[count..];
        pump.received(count).unwrap();
    }
    (data, most_held)
}

/// The handshake between the pump and the peer, in memory. It ends as soon as both are done:
/// what the peer sends after its last handshake message (TLS 1.3 session tickets) comes with
/// the application data.
fn handshake<C: Unbuffered>(pump: &mut TlsConnection<'_, C>, peer: &mut Connection) {
    for _ in 0..10 {
        to_peer(pump, peer);
        if pump.is_open() && !peer.is_handshaking() {
            return;
        }
        let records = peer_records(peer);
        let (data, _) = transfer(pump, &records, || usize::MAX, || RECORD_BUFFER);
        assert!(data.is_empty(), "no application data during the handshake");
    }
    panic!("the handshake did not finish");
}

/// The peer sends `records` (one record each) and the pump receives them in fills of `fill()`,
/// taken in pieces of `piece()`: all of it arrives intact. Returns the most held at once.
fn send_and_check<C: Unbuffered>(
    pump: &mut TlsConnection<'_, C>,
    peer: &mut Connection,
    records: &[Vec<u8>],
    fill: impl FnMut() -> usize,
    piece: impl FnMut() -> usize,
    name: &str,
) -> usize {
    peer.set_buffer_limit(None);
    for record in records {
        peer.writer().write_all(record).unwrap();
    }
    let wire = peer_records(peer);
    let (data, most_held) = transfer(pump, &wire, fill, piece);
    let sent: Vec<u8> = records.concat();
    assert_eq!(data.len(), sent.len(), "{name}: every octet arrives");
    assert!(data == sent, "{name}: the data arrives intact and in order");
    assert!(most_held <= RECORD_BUFFER, "{name}: at most one fill is held ({most_held} B)");
    most_held
}

fn open_server<'b>(config: &Arc<ServerConfig>, peer: &mut Connection, incoming: &'b mut [u8], outgoing: &'b mut [u8]) -> TlsServer<'b> {
    let mut server = TlsServer::new(config.clone(), incoming, outgoing).unwrap();
    handshake(&mut server, peer);
    server
}

fn our_config(pki: &Pki) -> Arc<ServerConfig> {
    let key = EcdsaP256SigningKey::from_pkcs8_der(&pki.key_der("leaf")).unwrap();
    server_config(&provider(), clock_at(0), vec![CertificateDer::from(pki.read_der("leaf"))], key).unwrap()
}

/// Runs `test` once per suite of [`cases`] on an open session of our server (buffers of the
/// sizes the board gives a session) with rustls's client as the peer.
fn each_suite(label: &str, test: impl Fn(&str, &mut TlsServer<'_>, &mut Connection)) {
    let pki = pki(label);
    let config = our_config(&pki);
    for (versions, suite) in cases() {
        let name = format!("{:?}", suite.suite());
        let mut peer = ring_client(&pki, versions, suite);
        let (mut incoming, mut outgoing) = (vec![0u8; RECORD_BUFFER], vec![0u8; OUTGOING]);
        let mut server = open_server(&config, &mut peer, &mut incoming, &mut outgoing);
        test(&name, &mut server, &mut peer);
    }
}

#[test]
fn several_records_in_one_fill_consumed_in_pieces() {
    each_suite("plaintext-several", |name, server, peer| {
    // 100 records of 1 to 199 octets: 10,000 octets of data, all of it in the first fill.
    let mut random = Random(0x5eed_0001);
    let records: Vec<Vec<u8>> = (0..100).map(|index| random.bytes(1 + index * 2)).collect();
    let held = send_and_check(server, peer, &records, || usize::MAX, || 7, name);
    assert_eq!(held, records.iter().map(Vec::len).sum::<usize>(), "{name}: the one fill held every record");
    });
}

#[test]
fn a_fill_that_ends_in_a_partial_record_while_plaintext_waits() {
    each_suite("plaintext-partial", |name, server, peer| {
    // Records of 5,000 octets: a full fill is three of them and the start of a fourth.
    let mut random = Random(0x5eed_0002);
    let records: Vec<Vec<u8>> = (0..7).map(|_| random.bytes(5000)).collect();
    for record in &records {
        peer.writer().write_all(record).unwrap();
    }
    let wire = peer_records(peer);
    let room = server.receive_buffer();
    assert_eq!(room.len(), RECORD_BUFFER, "{name}: an open idle session offers the whole buffer");
    let count = room.len().min(wire.len());
    room[..count].copy_from_slice(&wire[..count]);
    server.received(count).unwrap();
    assert_eq!(server.plaintext(), records[..3].concat(), "{name}: three records decrypted, the fourth incomplete");
    // Consumed in pieces while the partial record waits behind the plaintext.
    let mut data = Vec::new();
    let mut random_piece = Random(0x5eed_0003);
    while !server.plaintext().is_empty() {
        let piece = random_piece.up_to(1500).min(server.plaintext().len());
        data.extend_from_slice(&server.plaintext()[..piece]);
        server.consume(piece);
    }
    let partial = count - 3 * (wire.len() / records.len());
    assert_eq!(server.receive_buffer().len(), RECORD_BUFFER - partial, "{name}: the partial record moved to the front");
    let (rest, _) = transfer(server, &wire[count..], || usize::MAX, || 4096);
    data.extend_from_slice(&rest);
    assert!(data == records.concat(), "{name}: the data arrives intact and in order");
    });
}

#[test]
fn the_largest_records_back_to_back() {
    each_suite("plaintext-largest", |name, server, peer| {
    let mut random = Random(0x5eed_0004);
    let records: Vec<Vec<u8>> = (0..6).map(|_| random.bytes(16_384)).collect();
    let held = send_and_check(server, peer, &records, || usize::MAX, || 16_384, name);
    assert_eq!(held, 16_384, "{name}: one whole record at a time");
    // The same, read in small pieces and received in odd fills.
    let mut fills = Random(0x5eed_0005);
    send_and_check(server, peer, &records, || fills.up_to(7000), || 333, name);
    });
}

#[test]
fn random_records_fills_and_pieces() {
    let pki = pki("plaintext-random");
    let config = our_config(&pki);
    for (versions, suite) in cases() {
        for seed in 1..=4u64 {
            let name = format!("{:?} seed {seed}", suite.suite());
            let mut peer = ring_client(&pki, versions, suite);
            let (mut incoming, mut outgoing) = (vec![0u8; RECORD_BUFFER], vec![0u8; OUTGOING]);
            let mut server = open_server(&config, &mut peer, &mut incoming, &mut outgoing);
            let mut random = Random(0x9e37_79b9_7f4a_7c15 ^ seed);
            // Mostly small records, some of the largest.
            let records: Vec<Vec<u8>> = (0..80)
                .map(|_| {
                    let size = if random.up_to(8) == 1 { random.up_to(16_384) } else { random.up_to(600) };
                    random.bytes(size)
                })
                .collect();
            let mut fills = Random(seed.wrapping_mul(31));
            let mut pieces = Random(seed.wrapping_mul(97));
            let fill = move || if fills.up_to(3) == 1 { usize::MAX } else { fills.up_to(9000) };
            send_and_check(&mut server, &mut peer, &records, fill, move || pieces.up_to(2500), &name);
        }
    }
}

#[test]
fn data_and_close_notify_in_one_fill() {
    each_suite("plaintext-close", |name, server, peer| {
    let data = Random(0x5eed_0006).bytes(3000);
    peer.writer().write_all(&data).unwrap();
    peer.send_close_notify();
    let wire = peer_records(peer);
    let room = server.receive_buffer();
    room[..wire.len()].copy_from_slice(&wire);
    server.received(wire.len()).unwrap();
    assert!(server.peer_closed(), "{name}: close_notify seen");
    assert_eq!(server.plaintext(), &data[..], "{name}: the data before it is kept");
    let mut read = vec![0u8; 5000];
    assert_eq!(server.read(&mut read), data.len());
    assert_eq!(&read[..data.len()], &data[..]);
    assert!(server.plaintext().is_empty());
    });
}

/// Our client against rustls's server: its TLS 1.3 session tickets (handshake records) come
/// among the application data, discarded in the same fills.
#[test]
fn the_client_side_with_session_tickets_among_the_data() {
    let pki = pki("plaintext-client");
    let anchor = pki.read_der("ca");
    let config = homemx_tls::client_config_with_minimum(&provider(), clock_at(0), Trust::CaAnchor(&anchor), MinimumTls::Tls12).unwrap();
    for (versions, suite) in cases() {
        let name = format!("{:?}", suite.suite());
        let mut peer = ring_server(&pki, versions, suite);
        let (mut incoming, mut outgoing) = (vec![0u8; RECORD_BUFFER], vec![0u8; OUTGOING]);
        let mut client = TlsClient::new(config.clone(), HOST, &mut incoming, &mut outgoing).unwrap();
        handshake(&mut client, &mut peer);
        assert_eq!(client.version_name(), if versions[0] == &rustls::version::TLS13 { "TLSv1.3" } else { "TLSv1.2" });
        let mut random = Random(0x5eed_0007);
        let records: Vec<Vec<u8>> = (0..40).map(|index| random.bytes(if index % 5 == 0 { 16_384 } else { 1 + index * 37 })).collect();
        send_and_check(&mut client, &mut peer, &records, || usize::MAX, || 1000, &name);
        // And back: the peer receives what our client writes.
        let reply = Random(0x5eed_0008).bytes(40_000);
        let (mut written, mut received) = (0, Vec::new());
        while written < reply.len() {
            written += client.write(&reply[written..]).unwrap();
            to_peer(&mut client, &mut peer);
            let mut chunk = [0u8; 4096];
            while let Ok(count @ 1..) = peer.reader().read(&mut chunk) {
                received.extend_from_slice(&chunk[..count]);
            }
        }
        assert!(received == reply, "{name}: the peer receives the reply intact");
    }
}
