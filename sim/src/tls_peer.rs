//! TLS 1.3 for the simulated provider's servers (smarthost, POP3): a rustls server connection
//! (the unbuffered API, as the device's client uses it, so rustls keeps its `no_std` defaults
//! in the simulator's build and the device's client behaves as on the board) over any
//! `embedded_io_async` byte stream, itself a stream ([`TlsStream`]) so that protocol peers are
//! generic over plain and TLS connections. [`TlsStream::accept`] serves implicit TLS and
//! STARTTLS alike: call it on a fresh connection, or on the plain one after the `220`/`+OK` to
//! STARTTLS/STLS (and drop whatever plaintext the peer had buffered, CVE-2011-0411).
//!
//! Deterministic: the crypto provider is the device's own (`homemx_tls::crypto::provider`,
//! RustCrypto) over a ChaCha20 stream from the seed ([`SeededRandom`]); the server key signs
//! with deterministic ECDSA (P-256, RFC 6979, [`EcdsaP256Key`]); the time is the simulated wall
//! clock ([`crate::sntp_peer::unix_ms_now`]). The certificates are fixtures
//! (`sim/fixtures/`, made once by `generate.sh`): a CA, which the owner provisions as the
//! device's trust anchor, and a server certificate for each [`Identity`].
//!
//! Owns: the fixtures, the server configurations and the TLS connections. Calls: `sntp_peer`.

use std::sync::{Arc, Mutex};

use embedded_io_async::{Error as _, ErrorKind, ErrorType, Read, Write};
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::DecodePrivateKey as _;
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore as _;
use rustls::crypto::{CryptoProvider, GetRandomFailed, SecureRandom};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::UnbufferedServerConnection;
use rustls::sign::{CertifiedKey, Signer, SigningKey, SingleCertAndKey};
use rustls::time_provider::TimeProvider;
use rustls::unbuffered::{ConnectionState, EncodeError};
use rustls::{ServerConfig, SignatureAlgorithm, SignatureScheme};

/// The provider's CA certificate (DER): the trust anchor the owner provisions.
pub const CA_DER: &[u8] = include_bytes!("../fixtures/ca.der");

/// Largest plaintext of one record.
const MAXIMUM_FRAGMENT: usize = 16_384;
/// Room for one record's expansion (header, content type, tag, padding).
const RECORD_OVERHEAD: usize = 5 + 256;

/// The servers the fixtures have a certificate for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// `smarthost.example.net`.
    Smarthost,
    /// `pop.example.net`.
    Pop,
}

impl Identity {
    /// The host name the certificate carries (its only SAN).
    pub const fn host_name(self) -> &'static str {
        match self {
            Self::Smarthost => "smarthost.example.net",
            Self::Pop => "pop.example.net",
        }
    }

    /// The certificate (DER).
    pub const fn certificate(self) -> &'static [u8] {
        match self {
            Self::Smarthost => include_bytes!("../fixtures/smarthost.example.net.der"),
            Self::Pop => include_bytes!("../fixtures/pop.example.net.der"),
        }
    }

    /// The private key (PKCS#8 DER, P-256).
    const fn private_key(self) -> &'static [u8] {
        match self {
            Self::Smarthost => include_bytes!("../fixtures/smarthost.example.net.key.der"),
            Self::Pop => include_bytes!("../fixtures/pop.example.net.key.der"),
        }
    }
}

/// rustls's random source for a simulated server: a ChaCha20 stream from the seed.
#[derive(Debug)]
pub struct SeededRandom(Mutex<ChaCha20Rng>);

impl SecureRandom for SeededRandom {
    fn fill(&self, destination: &mut [u8]) -> Result<(), GetRandomFailed> {
        self.0.lock().map_err(|_| GetRandomFailed)?.fill_bytes(destination);
        Ok(())
    }
}

/// The device's crypto provider over `random` (leaked: rustls wants a `'static` source; one
/// per boot of the simulation).
pub fn provider(random: ChaCha20Rng) -> Arc<CryptoProvider> {
    let random: &'static SeededRandom = Box::leak(Box::new(SeededRandom(Mutex::new(random))));
    homemx_tls::crypto::provider(random)
}

/// The simulated wall clock, for rustls's ticket lifetimes.
#[derive(Debug)]
struct SimulatedTime;

impl TimeProvider for SimulatedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(core::time::Duration::from_millis(crate::sntp_peer::unix_ms_now())))
    }
}

/// A P-256 server key signing with deterministic ECDSA (RFC 6979): no randomness, the same
/// signature for the same handshake.
#[derive(Debug, Clone)]
pub struct EcdsaP256Key(p256::ecdsa::SigningKey);

impl EcdsaP256Key {
    /// The key of a PKCS#8 DER document; `None` if it is not a P-256 key.
    pub fn from_pkcs8_der(der: &[u8]) -> Option<Self> {
        p256::SecretKey::from_pkcs8_der(der).ok().map(|secret| Self(secret.into()))
    }
}

impl SigningKey for EcdsaP256Key {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.contains(&SignatureScheme::ECDSA_NISTP256_SHA256).then(|| Box::new(self.clone()) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

impl Signer for EcdsaP256Key {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let signature: p256::ecdsa::Signature = self.0.sign(message);
        Ok(signature.to_der().as_bytes().to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

/// A TLS 1.3 server configuration presenting `identity`'s certificate (no client
/// certificates; tickets as rustls sends them by default).
pub fn server_config(provider: &Arc<CryptoProvider>, identity: Identity) -> Arc<ServerConfig> {
    let key = EcdsaP256Key::from_pkcs8_der(identity.private_key()).expect("the fixture key is a P-256 PKCS#8 key");
    let certified = CertifiedKey::new(vec![CertificateDer::from(identity.certificate())], Arc::new(key));
    let config = ServerConfig::builder_with_details(provider.clone(), Arc::new(SimulatedTime))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the provider supports TLS 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    Arc::new(config)
}

/// Why a TLS stream failed.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsPeerError {
    /// The transport failed.
    Transport(ErrorKind),
    /// The connection ended before the handshake finished.
    EndedInHandshake,
    /// rustls refused (the client's alert, a bad record, …).
    Tls(rustls::Error),
    /// Written after close_notify was sent.
    Closed,
}

impl core::fmt::Display for TlsPeerError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, formatter)
    }
}

impl std::error::Error for TlsPeerError {}

impl embedded_io_async::Error for TlsPeerError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Transport(kind) => *kind,
            Self::EndedInHandshake => ErrorKind::ConnectionReset,
            Self::Tls(_) => ErrorKind::InvalidData,
            Self::Closed => ErrorKind::NotConnected,
        }
    }
}

/// What the state machine is asked to do once application data may be sent.
enum Request<'d> {
    Nothing,
    Write(&'d [u8]),
    Close,
}

/// A TLS server connection over `transport`, itself a byte stream of the plaintext.
pub struct TlsStream<T> {
    transport: T,
    connection: UnbufferedServerConnection,
    /// Received records not yet processed.
    incoming: Vec<u8>,
    /// Records to send.
    outgoing: Vec<u8>,
    /// Decrypted data not yet read, from `plaintext_start`.
    plaintext: Vec<u8>,
    plaintext_start: usize,
    /// Application data may be sent (the server's handshake flight is out).
    open: bool,
    peer_closed: bool,
    close_sent: bool,
    failure: Option<TlsPeerError>,
}

impl<T: Read + Write> TlsStream<T> {
    /// Runs the server's side of the handshake over `transport` until application data may be
    /// sent (rustls: once the client's Finished is in, so a client that refuses the certificate
    /// fails it with its alert). On failure the alert rustls chose, if any, has been sent.
    pub async fn accept(transport: T, config: Arc<ServerConfig>) -> Result<Self, TlsPeerError> {
        let connection = UnbufferedServerConnection::new(config).map_err(TlsPeerError::Tls)?;
        let mut stream = Self {
            transport,
            connection,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            plaintext: Vec::new(),
            plaintext_start: 0,
            open: false,
            peer_closed: false,
            close_sent: false,
            failure: None,
        };
        while !stream.open {
            stream.receive().await?;
        }
        Ok(stream)
    }

    /// The transport (e.g. to abort the TCP connection).
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Sends close_notify (once) and flushes.
    pub async fn close(&mut self) -> Result<(), TlsPeerError> {
        if !self.close_sent && self.open && self.failure.is_none() {
            self.drive(Request::Close)?;
        }
        self.send_output().await?;
        self.transport.flush().await.map_err(|error| TlsPeerError::Transport(error.kind()))
    }

    /// Reads more records from the transport and processes them (sending what they call for).
    async fn receive(&mut self) -> Result<(), TlsPeerError> {
        self.drive(Request::Nothing)?;
        self.send_output().await?;
        if self.open && (!self.plaintext_unread().is_empty() || self.peer_closed) {
            return Ok(());
        }
        let mut buffer = [0u8; 4096];
        let count = self.transport.read(&mut buffer).await.map_err(|error| TlsPeerError::Transport(error.kind()))?;
        if count == 0 {
            // The peer closed without close_notify: the end of the stream (a truncation SMTP's
            // and POP3's own terminators reveal).
            self.peer_closed = true;
            return if self.open { Ok(()) } else { Err(TlsPeerError::EndedInHandshake) };
        }
        self.incoming.extend_from_slice(&buffer[..count]);
        let result = self.drive(Request::Nothing);
        self.send_output().await?;
        result.map(|_| ())
    }

    fn plaintext_unread(&self) -> &[u8] {
        &self.plaintext[self.plaintext_start..]
    }

    async fn send_output(&mut self) -> Result<(), TlsPeerError> {
        if !self.outgoing.is_empty() {
            let result = self.transport.write_all(&self.outgoing).await;
            self.outgoing.clear();
            result.map_err(|error| TlsPeerError::Transport(error.kind()))?;
        }
        Ok(())
    }

    /// Runs rustls over the received records until it needs more input, answering `request`
    /// when application data may be sent. Returns the plaintext octets encrypted.
    fn drive(&mut self, request: Request<'_>) -> Result<usize, TlsPeerError> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        let mut request = request;
        let mut encrypted = 0;
        loop {
            let status = self.connection.process_tls_records(&mut self.incoming);
            let discard = status.discard;
            let mut progressed = false;
            let outcome: Result<(), TlsPeerError> = match status.state {
                Err(error) => Err(TlsPeerError::Tls(error)),
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    progressed = true;
                    let mut result = Ok(());
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(record) => self.plaintext.extend_from_slice(record.payload),
                            Err(error) => {
                                result = Err(TlsPeerError::Tls(error));
                                break;
                            }
                        }
                    }
                    result
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    let start = self.outgoing.len();
                    self.outgoing.resize(start + MAXIMUM_FRAGMENT + RECORD_OVERHEAD, 0);
                    let result = match encode.encode(&mut self.outgoing[start..]) {
                        Ok(count) => {
                            self.outgoing.truncate(start + count);
                            progressed = true;
                            Ok(())
                        }
                        Err(EncodeError::InsufficientSize(_)) | Err(EncodeError::AlreadyEncoded) => Err(TlsPeerError::Closed),
                    };
                    if result.is_err() {
                        self.outgoing.truncate(start);
                    }
                    result
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    // The records wait in `outgoing` until the caller sends them.
                    transmit.done();
                    progressed = true;
                    Ok(())
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    self.open = true;
                    match core::mem::replace(&mut request, Request::Nothing) {
                        Request::Nothing => Ok(()),
                        Request::Write(data) => {
                            progressed = true;
                            let mut result = Ok(());
                            for chunk in data.chunks(MAXIMUM_FRAGMENT) {
                                let start = self.outgoing.len();
                                self.outgoing.resize(start + chunk.len() + RECORD_OVERHEAD, 0);
                                match traffic.encrypt(chunk, &mut self.outgoing[start..]) {
                                    Ok(written) => {
                                        self.outgoing.truncate(start + written);
                                        encrypted += chunk.len();
                                    }
                                    Err(_) => {
                                        self.outgoing.truncate(start);
                                        result = Err(TlsPeerError::Closed);
                                        break;
                                    }
                                }
                            }
                            result
                        }
                        Request::Close => {
                            progressed = true;
                            let start = self.outgoing.len();
                            self.outgoing.resize(start + RECORD_OVERHEAD, 0);
                            match traffic.queue_close_notify(&mut self.outgoing[start..]) {
                                Ok(written) => {
                                    self.outgoing.truncate(start + written);
                                    self.close_sent = true;
                                    Ok(())
                                }
                                Err(_) => {
                                    self.outgoing.truncate(start);
                                    Err(TlsPeerError::Closed)
                                }
                            }
                        }
                    }
                }
                Ok(ConnectionState::PeerClosed) | Ok(ConnectionState::Closed) => {
                    progressed = !self.peer_closed;
                    self.peer_closed = true;
                    Ok(())
                }
                // BlockedHandshake (more input needed), and early data (not enabled).
                Ok(_) => Ok(()),
            };
            if discard > 0 {
                self.incoming.drain(..discard);
            }
            match outcome {
                Err(error) => {
                    self.queue_fatal_alert();
                    self.failure = Some(error.clone());
                    return Err(error);
                }
                Ok(()) if !progressed => return Ok(encrypted),
                Ok(()) => {}
            }
        }
    }

    /// After an error rustls holds the fatal alert it chose: encode it so it is sent. The
    /// records not yet processed are passed again (rustls may still hold handshake messages
    /// that point into them; an empty buffer there makes rustls panic).
    fn queue_fatal_alert(&mut self) {
        for _ in 0..4 {
            let status = self.connection.process_tls_records(&mut self.incoming);
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    let start = self.outgoing.len();
                    self.outgoing.resize(start + RECORD_OVERHEAD + 64, 0);
                    let count = encode.encode(&mut self.outgoing[start..]).unwrap_or(0);
                    self.outgoing.truncate(start + count);
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => return,
            }
        }
    }
}

impl<T> ErrorType for TlsStream<T> {
    type Error = TlsPeerError;
}

impl<T: Read + Write> Read for TlsStream<T> {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, TlsPeerError> {
        loop {
            let unread = self.plaintext_unread();
            if !unread.is_empty() || buffer.is_empty() {
                let count = unread.len().min(buffer.len());
                buffer[..count].copy_from_slice(&unread[..count]);
                self.plaintext_start += count;
                if self.plaintext_start == self.plaintext.len() {
                    self.plaintext.clear();
                    self.plaintext_start = 0;
                }
                return Ok(count);
            }
            if self.peer_closed {
                return Ok(0);
            }
            self.receive().await?;
        }
    }
}

impl<T: Read + Write> Write for TlsStream<T> {
    async fn write(&mut self, data: &[u8]) -> Result<usize, TlsPeerError> {
        if self.close_sent {
            return Err(TlsPeerError::Closed);
        }
        loop {
            let count = self.drive(Request::Write(data))?;
            self.send_output().await?;
            if count > 0 || data.is_empty() {
                return Ok(count);
            }
            // Not yet allowed to send: the handshake needs the client's next flight.
            if self.peer_closed {
                return Err(TlsPeerError::Closed);
            }
            self.receive().await?;
        }
    }

    async fn flush(&mut self) -> Result<(), TlsPeerError> {
        self.send_output().await?;
        self.transport.flush().await.map_err(|error| TlsPeerError::Transport(error.kind()))
    }
}

/// An in-memory duplex byte pipe for the peers' tests.
#[cfg(test)]
pub mod testing {
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;
    use std::rc::Rc;

    use embedded_io_async::{ErrorType, Read, Write};

    /// Bytes one way, and whether the writer closed.
    #[derive(Default)]
    struct Direction {
        bytes: VecDeque<u8>,
        closed: bool,
    }

    /// One end of an in-memory duplex pipe; both ends are polled by one `block_on`, so a read
    /// without data is `Pending` without a waker (block_on polls again), a bounded number of
    /// times.
    pub struct PipeEnd {
        inbox: Rc<RefCell<Direction>>,
        outbox: Rc<RefCell<Direction>>,
        /// Everything this end wrote (the transcript).
        pub written: Rc<RefCell<Vec<u8>>>,
        idle_polls: Rc<Cell<u32>>,
    }

    pub fn pipe() -> (PipeEnd, PipeEnd) {
        let (a, b): (Rc<RefCell<Direction>>, Rc<RefCell<Direction>>) = (Rc::default(), Rc::default());
        let idle = Rc::new(Cell::new(0));
        (
            PipeEnd { inbox: a.clone(), outbox: b.clone(), written: Rc::default(), idle_polls: idle.clone() },
            PipeEnd { inbox: b, outbox: a, written: Rc::default(), idle_polls: idle },
        )
    }

    impl ErrorType for PipeEnd {
        type Error = core::convert::Infallible;
    }

    impl Read for PipeEnd {
        async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Self::Error> {
            core::future::poll_fn(|_| {
                let mut inbox = self.inbox.borrow_mut();
                if inbox.bytes.is_empty() && !inbox.closed {
                    self.idle_polls.set(self.idle_polls.get() + 1);
                    assert!(self.idle_polls.get() < 1_000_000, "both ends wait: a deadlock");
                    return core::task::Poll::Pending;
                }
                let count = inbox.bytes.len().min(buffer.len());
                for (slot, byte) in buffer.iter_mut().zip(inbox.bytes.drain(..count)) {
                    *slot = byte;
                }
                core::task::Poll::Ready(Ok(count))
            })
            .await
        }
    }

    impl Write for PipeEnd {
        async fn write(&mut self, data: &[u8]) -> Result<usize, Self::Error> {
            self.outbox.borrow_mut().bytes.extend(data);
            self.written.borrow_mut().extend_from_slice(data);
            Ok(data.len())
        }

        async fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    impl Drop for PipeEnd {
        fn drop(&mut self) {
            self.outbox.borrow_mut().closed = true;
        }
    }

}

#[cfg(test)]
mod tests {
    use homemx_tls::{client_config, TlsClient, Trust, RECORD_BUFFER};
    use rand_core::SeedableRng;

    use super::testing::{pipe, PipeEnd};
    use super::*;

    #[derive(Debug)]
    struct FixedClock;

    impl homemx_tls::WallClock for FixedClock {
        fn unix_seconds(&self) -> Option<u64> {
            Some(crate::sntp_peer::BASE_UNIX_SECONDS)
        }
    }

    /// The device's TLS client over `end`: the handshake, then reads until `expect` arrived,
    /// writes `send`, reads until the server's close; returns all the plaintext read.
    async fn device_client(mut end: PipeEnd, server_name: &str, send: &[u8], expect: &[u8]) -> Result<Vec<u8>, String> {
        let provider = provider(ChaCha20Rng::seed_from_u64(2));
        let config = client_config(&provider, &FixedClock, Trust::CaAnchor(CA_DER)).map_err(|error| format!("{error:?}"))?;
        let (mut incoming, mut outgoing) = (vec![0u8; RECORD_BUFFER], vec![0u8; 8192]);
        let mut client = TlsClient::new(config, server_name, &mut incoming, &mut outgoing).map_err(|error| format!("{error:?}"))?;
        let mut plaintext = Vec::new();
        let mut sent = false;
        loop {
            let output = client.output().to_vec();
            end.write_all(&output).await.unwrap();
            client.output_sent(output.len());
            let mut buffer = [0u8; 4096];
            let count = client.read(&mut buffer);
            plaintext.extend_from_slice(&buffer[..count]);
            if !sent && plaintext.windows(expect.len()).any(|window| window == expect) {
                client.write(send).map_err(|error| format!("{error:?}"))?;
                sent = true;
                continue;
            }
            if client.peer_closed() {
                return Ok(plaintext);
            }
            let receive = client.receive_buffer();
            let count = end.read(receive).await.unwrap();
            if count == 0 {
                return Err(format!("the server ended the connection; plaintext so far {:?}", String::from_utf8_lossy(&plaintext)));
            }
            client.received(count).map_err(|error| error.describe().to_string())?;
        }
    }

    /// A server that greets, reads one line, answers it and closes.
    async fn server(end: PipeEnd, identity: Identity) -> Result<Vec<u8>, TlsPeerError> {
        let provider = provider(ChaCha20Rng::seed_from_u64(1));
        let mut stream = TlsStream::accept(end, server_config(&provider, identity)).await?;
        stream.write_all(b"220 hello\r\n").await?;
        let mut pending = Vec::new();
        let line = crate::peers::line(&mut stream, &mut pending).await.ok_or(TlsPeerError::EndedInHandshake)?;
        stream.write_all(&[b"you said ", &line[..], b"\r\n"].concat()).await?;
        stream.close().await?;
        Ok(line)
    }

    /// What one exchange gave: the server's result, the client's, and the bytes each sent.
    type Exchange = (Result<Vec<u8>, TlsPeerError>, Result<Vec<u8>, String>, Vec<u8>, Vec<u8>);

    /// One exchange with a client that expects `server_name`.
    fn exchange(server_name: &str) -> Exchange {
        let (server_end, client_end) = pipe();
        let (server_written, client_written) = (server_end.written.clone(), client_end.written.clone());
        let (served, client) = embassy_futures::block_on(embassy_futures::join::join(
            server(server_end, Identity::Smarthost),
            device_client(client_end, server_name, b"EHLO device\r\n", b"220 hello\r\n"),
        ));
        let (server_bytes, client_bytes) = (server_written.borrow().clone(), client_written.borrow().clone());
        (served, client, server_bytes, client_bytes)
    }

    #[test]
    fn the_device_client_verifies_the_server_by_the_ca_and_they_talk() {
        let (served, client, server_bytes, _) = exchange(Identity::Smarthost.host_name());
        assert_eq!(served.expect("the server read the line"), b"EHLO device");
        assert_eq!(client.expect("the client read the greeting, the answer and close_notify"), b"220 hello\r\nyou said EHLO device\r\n");
        let in_clear = |needle: &[u8]| server_bytes.windows(needle.len()).any(|window| window == needle);
        assert!(!in_clear(b"220 hello") && !in_clear(b"you said"), "the server sent its data encrypted");
    }

    #[test]
    fn the_same_seeds_give_the_same_bytes_on_the_wire() {
        let (_, _, server_once, client_once) = exchange(Identity::Smarthost.host_name());
        let (_, _, server_again, client_again) = exchange(Identity::Smarthost.host_name());
        assert_eq!(server_once, server_again, "the server's handshake, signature and records are deterministic");
        assert_eq!(client_once, client_again);
    }

    #[test]
    fn a_client_expecting_another_name_refuses_the_certificate_and_the_server_sees_it() {
        let (served, client, _, _) = exchange(Identity::Pop.host_name());
        assert!(client.is_err(), "the smarthost's certificate does not name pop.example.net: {client:?}");
        assert!(served.is_err(), "the server learnt of it (alert or end) instead of reading a line: {served:?}");
    }
}
