//! A TLS 1.3 client connection as a sans-I/O state machine over rustls's unbuffered API: the
//! caller owns the sockets and the record buffers, feeds received bytes in, sends what
//! [`TlsClient::output`] holds, and reads and writes plaintext. Nothing here blocks or sleeps;
//! the heap holds rustls's state (about 4 KB during the handshake), one record's plaintext in
//! rustls while it is handed over, and 32 KB of decrypted data for the caller, allocated once
//! per connection at its first application data.
//!
//! Order of use: after [`TlsClient::new`] and after every call that may produce records
//! (`received`, `write`, `close`), send all of [`TlsClient::output`] before waiting for input.

use alloc::sync::Arc;
use alloc::vec::Vec;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use rustls::{AlertDescription, CertificateError, ClientConfig, Error};

/// Room for one whole TLS record as received: 5 header octets, 16 384 of plaintext, the
/// content type and up to 255 octets of AEAD expansion and padding (RFC 8446 5.2).
pub const RECORD_BUFFER: usize = 5 + 16_384 + 256;
/// Per-record overhead of an outgoing application-data record: header, content type, tag.
const RECORD_OVERHEAD: usize = 5 + 1 + 16;
/// Largest plaintext of one record.
const MAXIMUM_FRAGMENT: usize = 16_384;
/// Decrypted data held for the caller: less than one record unread plus the next record.
const PLAINTEXT_CAPACITY: usize = 2 * MAXIMUM_FRAGMENT;

/// Why a TLS connection failed.
#[derive(Clone, Debug, PartialEq)]
pub enum TlsError {
    /// rustls refused: the handshake, the certificate, or a record.
    Protocol(Error),
    /// The server name is not a valid DNS name or IP address.
    InvalidServerName,
    /// A record did not fit the caller's buffers (they are smaller than [`RECORD_BUFFER`]).
    BufferTooSmall,
    /// Application data before the handshake completed, or after the connection closed.
    NotOpen,
}

/// Broad classes of failure, for alerts and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The server's certificate chain or key was refused (or none was presented).
    Certificate,
    /// The wall-clock time was needed and not known.
    TimeUnknown,
    /// No common TLS 1.3 parameters, or the server broke the protocol.
    Handshake,
    /// The server sent a fatal alert.
    PeerAlert,
    /// Local limits (buffers, state).
    Local,
}

impl TlsError {
    /// The class of the failure.
    pub fn kind(&self) -> FailureKind {
        match self {
            TlsError::Protocol(Error::InvalidCertificate(_) | Error::NoCertificatesPresented) => FailureKind::Certificate,
            TlsError::Protocol(Error::InappropriateHandshakeMessage { .. } | Error::InappropriateMessage { .. }) => {
                // A server that skips Certificate/CertificateVerify is caught here.
                FailureKind::Certificate
            }
            TlsError::Protocol(Error::FailedToGetCurrentTime) => FailureKind::TimeUnknown,
            TlsError::Protocol(Error::AlertReceived(_)) => FailureKind::PeerAlert,
            TlsError::Protocol(_) => FailureKind::Handshake,
            TlsError::InvalidServerName | TlsError::BufferTooSmall | TlsError::NotOpen => FailureKind::Local,
        }
    }

    /// A short explanation for the owner's log.
    pub fn describe(&self) -> &'static str {
        match self {
            TlsError::Protocol(Error::InvalidCertificate(error)) => match error {
                CertificateError::UnknownIssuer => "certificate not from the provisioned anchor, or not the pinned key",
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => "certificate expired",
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "certificate not valid yet",
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    "certificate does not name the server"
                }
                CertificateError::BadSignature => "certificate signature invalid",
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                    "certificate not for server authentication"
                }
                CertificateError::BadEncoding => "certificate unreadable",
                _ => "certificate refused",
            },
            TlsError::Protocol(Error::NoCertificatesPresented) => "server presented no certificate",
            TlsError::Protocol(Error::InappropriateHandshakeMessage { .. }) => {
                "server skipped a required handshake message (no certificate or no signature)"
            }
            TlsError::Protocol(Error::InappropriateMessage { .. }) => "unexpected message during the handshake",
            TlsError::Protocol(Error::FailedToGetCurrentTime) => "wall-clock time unknown",
            TlsError::Protocol(Error::AlertReceived(AlertDescription::ProtocolVersion)) => "server does not speak TLS 1.3",
            TlsError::Protocol(Error::AlertReceived(AlertDescription::HandshakeFailure)) => {
                "server refused the handshake (no common parameters)"
            }
            TlsError::Protocol(Error::AlertReceived(_)) => "server sent a TLS alert",
            TlsError::Protocol(Error::PeerIncompatible(_)) => "no common TLS 1.3 parameters",
            TlsError::Protocol(Error::DecryptError) => "record failed authentication",
            TlsError::Protocol(Error::InvalidMessage(_) | Error::PeerMisbehaved(_)) => "server broke the TLS protocol",
            TlsError::Protocol(_) => "TLS failure",
            TlsError::InvalidServerName => "invalid server name",
            TlsError::BufferTooSmall => "TLS record larger than the buffers",
            TlsError::NotOpen => "TLS connection not open",
        }
    }
}

impl From<Error> for TlsError {
    fn from(error: Error) -> Self {
        TlsError::Protocol(error)
    }
}

/// What a call into the state machine asks it to do once application data may be sent.
enum Request<'d> {
    Nothing,
    Write(&'d [u8]),
    Close,
}

/// One TLS 1.3 client connection.
pub struct TlsClient<'b> {
    connection: UnbufferedClientConnection,
    incoming: &'b mut [u8],
    incoming_used: usize,
    outgoing: &'b mut [u8],
    outgoing_used: usize,
    plaintext: Vec<u8>,
    plaintext_start: usize,
    open: bool,
    peer_closed: bool,
    close_sent: bool,
    failure: Option<TlsError>,
}

impl<'b> TlsClient<'b> {
    /// Starts a handshake with `server_name` (SNI, and the name a CA-anchored certificate must
    /// carry). `incoming` should hold [`RECORD_BUFFER`] octets; `outgoing` a few KB (records
    /// are split to fit). The ClientHello is in [`Self::output`] on return.
    pub fn new(
        config: Arc<ClientConfig>,
        server_name: &str,
        incoming: &'b mut [u8],
        outgoing: &'b mut [u8],
    ) -> Result<Self, TlsError> {
        let name = ServerName::try_from(server_name).map_err(|_| TlsError::InvalidServerName)?.to_owned();
        let connection = UnbufferedClientConnection::new(config, name)?;
        let mut client = TlsClient {
            connection,
            incoming,
            incoming_used: 0,
            outgoing,
            outgoing_used: 0,
            plaintext: Vec::new(),
            plaintext_start: 0,
            open: false,
            peer_closed: false,
            close_sent: false,
            failure: None,
        };
        client.drive(Request::Nothing)?;
        Ok(client)
    }

    /// Whether the handshake is still running.
    pub fn is_handshaking(&self) -> bool {
        !self.open && self.failure.is_none()
    }

    /// Whether the handshake completed (the server's certificate and signature were verified).
    pub fn is_open(&self) -> bool {
        self.open && self.failure.is_none()
    }

    /// The negotiated cipher suite's name (after the handshake).
    pub fn suite_name(&self) -> &'static str {
        match self.connection.negotiated_cipher_suite().map(|suite| suite.suite()) {
            Some(rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256) => "TLS_CHACHA20_POLY1305_SHA256",
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256) => "TLS_AES_128_GCM_SHA256",
            Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384) => "TLS_AES_256_GCM_SHA384",
            Some(_) => "another suite",
            None => "none",
        }
    }

    /// Whether the server sent close_notify.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Where received bytes go; then call [`Self::received`]. Empty when a record does not fit.
    pub fn receive_buffer(&mut self) -> &mut [u8] {
        &mut self.incoming[self.incoming_used..]
    }

    /// `count` bytes were written into [`Self::receive_buffer`]: process them.
    pub fn received(&mut self, count: usize) -> Result<(), TlsError> {
        self.incoming_used = (self.incoming_used + count).min(self.incoming.len());
        self.drive(Request::Nothing)?;
        if self.incoming_used == self.incoming.len() {
            // A full buffer that rustls could not make progress on: a record larger than it.
            return self.fail(TlsError::BufferTooSmall);
        }
        Ok(())
    }

    /// Records to send now.
    pub fn output(&self) -> &[u8] {
        &self.outgoing[..self.outgoing_used]
    }

    /// `count` octets of [`Self::output`] were sent.
    pub fn output_sent(&mut self, count: usize) {
        let count = count.min(self.outgoing_used);
        self.outgoing.copy_within(count..self.outgoing_used, 0);
        self.outgoing_used -= count;
    }

    /// Decrypted data not yet consumed.
    pub fn plaintext(&self) -> &[u8] {
        &self.plaintext[self.plaintext_start..]
    }

    /// `count` octets of [`Self::plaintext`] were used.
    pub fn consume(&mut self, count: usize) {
        self.plaintext_start = (self.plaintext_start + count).min(self.plaintext.len());
        if self.plaintext_start == self.plaintext.len() {
            self.plaintext.clear();
            self.plaintext_start = 0;
            // rustls may hold more records than were taken before the limit.
            let _ = self.drive(Request::Nothing);
        }
    }

    /// Copies decrypted data into `buffer` and consumes it; returns the count.
    pub fn read(&mut self, buffer: &mut [u8]) -> usize {
        let count = self.plaintext().len().min(buffer.len());
        buffer[..count].copy_from_slice(&self.plaintext()[..count]);
        self.consume(count);
        count
    }

    /// Encrypts as much of `data` as fits the output room; returns the count (0: send
    /// [`Self::output`] first).
    pub fn write(&mut self, data: &[u8]) -> Result<usize, TlsError> {
        if !self.is_open() || self.close_sent {
            return Err(self.failure.clone().unwrap_or(TlsError::NotOpen));
        }
        self.drive(Request::Write(data))
    }

    /// Queues close_notify (once).
    pub fn close(&mut self) -> Result<(), TlsError> {
        if self.close_sent || !self.is_open() {
            return Ok(());
        }
        self.drive(Request::Close).map(|_| ())
    }

    fn fail(&mut self, error: TlsError) -> Result<(), TlsError> {
        if self.failure.is_none() {
            self.failure = Some(error.clone());
        }
        Err(error)
    }

    /// Runs rustls over the received records until it needs more input, answering `request`
    /// when application data may be sent. Returns the plaintext octets encrypted.
    fn drive(&mut self, request: Request<'_>) -> Result<usize, TlsError> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        let mut request = request;
        let mut encrypted = 0;
        loop {
            let status = self.connection.process_tls_records(&mut self.incoming[..self.incoming_used]);
            let discard = status.discard;
            let mut progressed = false;
            let outcome: Result<(), TlsError> = match status.state {
                Err(error) => Err(error.into()),
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    // Taken while less than a record waits unread, so the buffer (allocated
                    // once, two records) never grows: rustls holds further records until the
                    // caller consumes, and a caller may write while a little is unread.
                    if self.plaintext.len() - self.plaintext_start < MAXIMUM_FRAGMENT {
                        self.plaintext.drain(..self.plaintext_start);
                        self.plaintext_start = 0;
                        // Allocated at the first application data (after the handshake's own
                        // allocations are gone), once.
                        if self.plaintext.capacity() < PLAINTEXT_CAPACITY {
                            self.plaintext.reserve_exact(PLAINTEXT_CAPACITY - self.plaintext.len());
                        }
                        progressed = true;
                        let mut result = Ok(());
                        while let Some(record) = traffic.next_record() {
                            match record {
                                Ok(record) => self.plaintext.extend_from_slice(record.payload),
                                Err(error) => {
                                    result = Err(error.into());
                                    break;
                                }
                            }
                        }
                        result
                    } else {
                        Ok(())
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    match encode.encode(&mut self.outgoing[self.outgoing_used..]) {
                        Ok(count) => {
                            self.outgoing_used += count;
                            progressed = true;
                            Ok(())
                        }
                        // The handshake record is lost if it is not encoded now: a fatal fault.
                        Err(EncodeError::InsufficientSize(_)) => Err(TlsError::BufferTooSmall),
                        Err(EncodeError::AlreadyEncoded) => Err(TlsError::NotOpen),
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    // The records wait in `outgoing` until the caller sends them, which it does
                    // before it waits for input.
                    transmit.done();
                    progressed = true;
                    Ok(())
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    self.open = true;
                    match core::mem::replace(&mut request, Request::Nothing) {
                        Request::Nothing => Ok(()),
                        Request::Write(data) => {
                            let room = self.outgoing.len() - self.outgoing_used;
                            let count = data.len().min(MAXIMUM_FRAGMENT).min(room.saturating_sub(RECORD_OVERHEAD));
                            if count == 0 {
                                Ok(())
                            } else {
                                match traffic.encrypt(&data[..count], &mut self.outgoing[self.outgoing_used..]) {
                                    Ok(written) => {
                                        self.outgoing_used += written;
                                        encrypted = count;
                                        Ok(())
                                    }
                                    Err(EncryptError::InsufficientSize(_)) => Ok(()),
                                    Err(_) => Err(TlsError::NotOpen),
                                }
                            }
                        }
                        Request::Close => match traffic.queue_close_notify(&mut self.outgoing[self.outgoing_used..]) {
                            Ok(written) => {
                                self.outgoing_used += written;
                                self.close_sent = true;
                                Ok(())
                            }
                            Err(_) => Err(TlsError::BufferTooSmall),
                        },
                    }
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    progressed = true;
                    Ok(())
                }
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    Ok(())
                }
                // BlockedHandshake (more input needed), and states a client never sees.
                Ok(_) => Ok(()),
            };
            if discard > 0 {
                self.incoming.copy_within(discard..self.incoming_used, 0);
                self.incoming_used -= discard;
            }
            match outcome {
                Err(error) => {
                    self.queue_fatal_alert();
                    self.fail(error.clone())?;
                }
                Ok(()) if !progressed => return Ok(encrypted),
                Ok(()) => {}
            }
        }
    }

    /// After an error rustls holds the fatal alert it chose (`bad_certificate`, `unknown_ca`,
    /// `decrypt_error` …): encode it so the caller sends it before closing. The records not yet
    /// processed are passed again, not an empty buffer: rustls may still hold handshake messages
    /// of the same record (a server that coalesces its flight: CertificateVerify and Finished
    /// behind a refused Certificate) as ranges of that buffer, and panics on an empty one.
    fn queue_fatal_alert(&mut self) {
        for _ in 0..4 {
            let status = self.connection.process_tls_records(&mut self.incoming[..self.incoming_used]);
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    if let Ok(count) = encode.encode(&mut self.outgoing[self.outgoing_used..]) {
                        self.outgoing_used += count;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => return,
            }
        }
    }
}
