//! The sans-I/O record pump, [`TlsConnection`], that is both [`crate::client::TlsClient`] and
//! [`crate::server::TlsServer`]: one rustls unbuffered connection (client or server side), the
//! caller's two record buffers, and the decrypted data held for the caller. Nothing here blocks
//! or sleeps; it calls only rustls.
//!
//! The heap holds rustls's state only (a few KB during the handshake, one to three KB once
//! open) and, for a moment, the copy rustls 0.23 makes of each record's plaintext (its
//! unbuffered API decrypts into a `Vec` of its own): the hand-over, at most 16 KB, one
//! connection at a time (no await in between). The decrypted data the caller has not consumed
//! stays in the caller's incoming buffer, in front of the records rustls has not processed:
//!
//! ```text
//! [ plaintext not consumed | free | records not processed | room to receive ]
//! 0                         ^plaintext_end  ^records_start  ^records_end    incoming.len()
//! ```
//!
//! A record's plaintext is copied in only once rustls has discarded the record (when it does
//! not fit before, it is left with rustls and taken at the next call, which offers it again
//! with nothing more to discard). Every record's plaintext is shorter than the record (its
//! header and AEAD tag), and the records are discarded from the front, so the plaintext always
//! ends before the first record still held: `plaintext_end <= records_start` whatever the
//! records, their sizes, or the fills. A record that would break it (impossible with rustls's
//! suites) fails the connection with [`TlsError::BufferTooSmall`] rather than overwrite.
//! Discarding a record moves nothing; the records left are moved to the front once no
//! plaintext waits, to make room to receive. Callers receive only while no plaintext waits
//! ([`TlsConnection::receive_buffer`]), so what waits came from one fill of the buffer.
//!
//! Outgoing records need not all fit the outgoing buffer at once: rustls hands over a flight
//! one record at a time (and drops a record it handed over that was not taken), so the pump
//! asks for the next one only while the room left holds the largest record the connection
//! makes (`fragment` plaintext octets and [`RECORD_OVERHEAD`]). When it does not, the pump
//! pauses with the records it has in [`TlsConnection::output`], and
//! [`TlsConnection::output_sent`] resumes it once they went out: the caller's loop "send
//! output until it is empty" carries the whole flight however large. The buffer must hold one
//! record; the server's configuration caps its records at [`crate::SERVER_OUTGOING_BUFFER`].

use core::num::NonZeroUsize;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{CommonState, Error};

/// Room for one whole TLS record as received: 5 header octets, 16 384 of plaintext, and up to
/// 256 octets of expansion (TLS 1.3: content type, AEAD tag and padding, RFC 8446 5.2; TLS 1.2
/// AES-GCM: 8 octets of explicit nonce and the tag).
pub const RECORD_BUFFER: usize = 5 + 16_384 + 256;
/// Per-record overhead of an outgoing record, the largest of the suites: header, TLS 1.2 GCM
/// explicit nonce (TLS 1.3: the content type octet), tag.
pub(crate) const RECORD_OVERHEAD: usize = 5 + 8 + 16;
/// Largest plaintext of one record.
pub(crate) const MAXIMUM_FRAGMENT: usize = 16_384;

/// Why a TLS connection failed.
#[derive(Clone, Debug, PartialEq)]
pub enum TlsError {
    /// rustls refused: the handshake, the certificate, or a record.
    Protocol(Error),
    /// The server name is not a valid DNS name or IP address.
    InvalidServerName,
    /// A record did not fit the caller's buffers (they are smaller than [`RECORD_BUFFER`]), or
    /// a record's plaintext did not fit the incoming buffer beside the records still held (not
    /// possible with rustls's suites: see the module doc).
    BufferTooSmall,
    /// Application data before the handshake completed, or after the connection closed.
    NotOpen,
}

impl From<Error> for TlsError {
    fn from(error: Error) -> Self {
        TlsError::Protocol(error)
    }
}

/// The side-specific half of rustls's unbuffered API (`process_tls_records` is not generic):
/// implemented for rustls's client and server connections only.
pub trait Unbuffered: sealed::Sealed {
    /// rustls's per-side data.
    type Data;
    /// Processes the records in `incoming`.
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
    /// The negotiated parameters.
    fn state(&self) -> &CommonState;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for rustls::client::UnbufferedClientConnection {}
    impl Sealed for rustls::server::UnbufferedServerConnection {}
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = ClientConnectionData;

    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }

    fn state(&self) -> &CommonState {
        self
    }
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = ServerConnectionData;

    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }

    fn state(&self) -> &CommonState {
        self
    }
}

/// What a call into the state machine asks it to do once application data may be sent.
enum Request<'d> {
    Nothing,
    Write(&'d [u8]),
}

/// One TLS connection's records and plaintext, client ([`crate::client::TlsClient`]) or server
/// ([`crate::server::TlsServer`]) side; see [`crate::client`] for the order of use.
pub struct TlsConnection<'b, C> {
    connection: C,
    /// The plaintext not consumed, then the records not processed (the module doc's picture):
    /// `plaintext_start <= plaintext_end <= records_start <= records_end <= incoming.len()`.
    incoming: &'b mut [u8],
    plaintext_start: usize,
    plaintext_end: usize,
    records_start: usize,
    records_end: usize,
    outgoing: &'b mut [u8],
    outgoing_used: usize,
    /// Largest plaintext of one outgoing record (the server's configuration caps it).
    fragment: usize,
    /// rustls has records to hand over that may not fit the room left: resumed by
    /// [`Self::output_sent`].
    paused: bool,
    open: bool,
    peer_closed: bool,
    /// close_notify asked for ([`Self::close`]); queued once rustls may send it.
    close_requested: bool,
    close_sent: bool,
    failure: Option<TlsError>,
}

impl<'b, C: Unbuffered> TlsConnection<'b, C> {
    /// Starts: the first flight (a client's ClientHello) is in [`Self::output`] on return.
    /// `fragment`: the largest plaintext of one record the connection makes.
    pub(crate) fn start(connection: C, incoming: &'b mut [u8], outgoing: &'b mut [u8], fragment: usize) -> Result<Self, TlsError> {
        let mut pump = TlsConnection {
            connection,
            incoming,
            plaintext_start: 0,
            plaintext_end: 0,
            records_start: 0,
            records_end: 0,
            outgoing,
            outgoing_used: 0,
            fragment,
            paused: false,
            open: false,
            peer_closed: false,
            close_requested: false,
            close_sent: false,
            failure: None,
        };
        pump.drive(Request::Nothing)?;
        Ok(pump)
    }

    /// Whether the handshake is still running.
    pub fn is_handshaking(&self) -> bool {
        !self.open && self.failure.is_none()
    }

    /// Whether the handshake completed (a client: the server's certificate and signature were
    /// verified) and no failure ended the connection.
    pub fn is_open(&self) -> bool {
        self.open && self.failure.is_none()
    }

    /// The failure that ended the connection, if any.
    pub fn failure(&self) -> Option<&TlsError> {
        self.failure.as_ref()
    }

    /// The negotiated suite's IANA name (after the handshake; "none" before).
    pub fn suite_name(&self) -> &'static str {
        match self.connection.state().negotiated_cipher_suite().map(|suite| suite.suite()) {
            Some(rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256) => "TLS_CHACHA20_POLY1305_SHA256",
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256) => "TLS_AES_128_GCM_SHA256",
            Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384) => "TLS_AES_256_GCM_SHA384",
            // rustls names the TLS 1.2 suites as IANA does.
            Some(suite) => suite.as_str().unwrap_or("another suite"),
            None => "none",
        }
    }

    /// The negotiated version: "TLSv1.3", "TLSv1.2", or "none" before the handshake.
    pub fn version_name(&self) -> &'static str {
        match self.connection.state().protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            Some(_) => "another version",
            None => "none",
        }
    }

    /// Whether the peer sent close_notify.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Where received bytes go; then call [`Self::received`]. Empty when a record does not fit.
    /// Fill it only while [`Self::plaintext`] is empty: the bound on decrypted data held (one
    /// fill, see the module doc) and the room rest on it (while plaintext waits, the records
    /// not processed have not been moved to the front and the room may be short, even empty).
    pub fn receive_buffer(&mut self) -> &mut [u8] {
        let end = self.records_end.min(self.incoming.len());
        &mut self.incoming[end..]
    }

    /// `count` bytes were written into [`Self::receive_buffer`]: process them.
    pub fn received(&mut self, count: usize) -> Result<(), TlsError> {
        self.records_end = self.records_end.saturating_add(count).min(self.incoming.len());
        self.drive(Request::Nothing)?;
        if !self.paused && self.plaintext().is_empty() && self.receive_buffer().is_empty() {
            // A full buffer that rustls could not make progress on: a record larger than it.
            return self.fail(TlsError::BufferTooSmall);
        }
        Ok(())
    }

    /// Records to send now.
    pub fn output(&self) -> &[u8] {
        &self.outgoing[..self.outgoing_used]
    }

    /// `count` octets of [`Self::output`] were sent. When the pump paused for room (the module
    /// doc), it resumes: more records may be in [`Self::output`] on return, and a failure
    /// ([`Self::failure`]) with its alert.
    pub fn output_sent(&mut self, count: usize) {
        let count = count.min(self.outgoing_used);
        self.outgoing.copy_within(count..self.outgoing_used, 0);
        self.outgoing_used -= count;
        if self.paused {
            self.paused = false;
            // A failure is kept in `failure` and fails every later call.
            let _ = self.drive(Request::Nothing);
        }
    }

    /// Decrypted data not yet consumed.
    pub fn plaintext(&self) -> &[u8] {
        self.incoming.get(self.plaintext_start..self.plaintext_end).unwrap_or_default()
    }

    /// `count` octets of [`Self::plaintext`] were used.
    pub fn consume(&mut self, count: usize) {
        self.plaintext_start = self.plaintext_start.saturating_add(count).min(self.plaintext_end);
        // Every call processed all the records it could: nothing more to decrypt until more
        // are received, into the room this makes.
        self.settle();
    }

    /// Copies decrypted data into `buffer` and consumes it; returns the count.
    pub fn read(&mut self, buffer: &mut [u8]) -> usize {
        let count = self.plaintext().len().min(buffer.len());
        buffer[..count].copy_from_slice(&self.plaintext()[..count]);
        self.consume(count);
        count
    }

    /// Encrypts as much of `data` as fits the output room and one record; returns the count
    /// (0: send [`Self::output`] first).
    pub fn write(&mut self, data: &[u8]) -> Result<usize, TlsError> {
        if !self.is_open() || self.close_sent {
            return Err(self.failure.clone().unwrap_or(TlsError::NotOpen));
        }
        self.drive(Request::Write(data))
    }

    /// Queues close_notify (once; after the records rustls has waiting, if any, see
    /// [`Self::output_sent`]).
    pub fn close(&mut self) -> Result<(), TlsError> {
        if self.close_sent || !self.is_open() {
            return Ok(());
        }
        self.close_requested = true;
        self.drive(Request::Nothing).map(|_| ())
    }

    /// Once no plaintext waits: the records not processed move to the front of the incoming
    /// buffer, so the room to receive is all the rest. Only between records (rustls holds no
    /// plaintext then): nothing is copied in while the records move.
    fn settle(&mut self) {
        if self.plaintext_start != self.plaintext_end {
            return;
        }
        self.plaintext_start = 0;
        self.plaintext_end = 0;
        if self.records_start > 0 {
            let end = self.records_end.min(self.incoming.len());
            let start = self.records_start.min(end);
            self.incoming.copy_within(start..end, 0);
            self.records_end = end - start;
            self.records_start = 0;
        }
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
            // rustls drops a record it handed over that is not taken: ask for the next only
            // while the room holds the largest; otherwise the caller sends first.
            let room = self.outgoing.len() - self.outgoing_used;
            if self.connection.state().wants_write() && self.outgoing_used > 0 && room < self.fragment + RECORD_OVERHEAD {
                self.paused = true;
                self.settle();
                return Ok(encrypted);
            }
            let (front, records) = split(self.incoming, self.records_start, self.records_end);
            let status = self.connection.process(records);
            let mut discard = status.discard;
            let mut progressed = false;
            let mut deferred = false;
            let outcome: Result<(), TlsError> = match status.state {
                Err(error) => Err(error.into()),
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    // rustls offers nothing else until its records are taken, not even a
                    // write. Each is appended to what the caller has not consumed, in the
                    // free room in front of the records; one that does not fit yet is left
                    // with rustls until this status's discard made room (the module doc).
                    progressed = true;
                    let mut result = Ok(());
                    loop {
                        let needed = traffic.peek_len().map_or(0, NonZeroUsize::get);
                        if needed > front.len().saturating_sub(self.plaintext_end) {
                            deferred = true;
                            break;
                        }
                        match traffic.next_record() {
                            None => break,
                            Some(Ok(record)) => {
                                discard += record.discard;
                                let end = self.plaintext_end.saturating_add(record.payload.len());
                                match front.get_mut(self.plaintext_end..end) {
                                    Some(room) => {
                                        room.copy_from_slice(record.payload);
                                        self.plaintext_end = end;
                                    }
                                    None => {
                                        result = Err(TlsError::BufferTooSmall);
                                        break;
                                    }
                                }
                            }
                            Some(Err(error)) => {
                                result = Err(error.into());
                                break;
                            }
                        }
                    }
                    result
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    match encode.encode(&mut self.outgoing[self.outgoing_used..]) {
                        Ok(count) => {
                            self.outgoing_used += count;
                            progressed = true;
                            Ok(())
                        }
                        // A record larger than the whole buffer (it was empty or held room for
                        // the largest, see above): lost if not encoded now, a fatal fault.
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
                        Request::Nothing if self.close_requested && !self.close_sent => {
                            match traffic.queue_close_notify(&mut self.outgoing[self.outgoing_used..]) {
                                Ok(written) => {
                                    self.outgoing_used += written;
                                    self.close_sent = true;
                                    Ok(())
                                }
                                Err(_) => Err(TlsError::BufferTooSmall),
                            }
                        }
                        Request::Nothing => Ok(()),
                        Request::Write(data) => {
                            // One record: rustls's `encrypt` seals all or nothing.
                            let count = data.len().min(self.fragment).min(room.saturating_sub(RECORD_OVERHEAD));
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
                // Only a server that accepts 0-RTT data sees this; ours never do.
                Ok(ConnectionState::ReadEarlyData(_)) => Err(TlsError::Protocol(Error::General("0-RTT data is not accepted".into()))),
                // BlockedHandshake (more input needed).
                Ok(_) => Ok(()),
            };
            // Discarded records are simply left behind; `settle` reclaims their room.
            self.records_start = self.records_start.saturating_add(discard).min(self.records_end);
            // A record left with rustls fits once its own discard is done; with nothing
            // discarded it never will (the plaintext would overtake the records).
            let outcome = if deferred && discard == 0 { Err(TlsError::BufferTooSmall) } else { outcome };
            match outcome {
                Err(error) => {
                    self.queue_fatal_alert();
                    self.fail(error.clone())?;
                }
                Ok(()) if !progressed => {
                    self.settle();
                    return Ok(encrypted);
                }
                Ok(()) => {}
            }
        }
    }

    /// After an error rustls holds the fatal alert it chose (`bad_certificate`, `unknown_ca`,
    /// `decrypt_error`, `handshake_failure` …): encode it so the caller sends it before closing.
    /// The records not yet processed are passed again, not an empty buffer: rustls may still
    /// hold handshake messages of the same record (a peer that coalesces its flight:
    /// CertificateVerify and Finished behind a refused Certificate) as ranges of that buffer,
    /// and panics on an empty one. rustls is called only while it has records queued: with
    /// none it would run its deframer over the same bytes again, and an error the deframer
    /// raised (garbage, a bad record header) would be raised, and its alert sent, twice (a
    /// debug assertion in rustls).
    fn queue_fatal_alert(&mut self) {
        for _ in 0..4 {
            if !self.connection.state().wants_write() {
                return;
            }
            let (_, records) = split(self.incoming, self.records_start, self.records_end);
            let status = self.connection.process(records);
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    if let Ok(count) = encode.encode(&mut self.outgoing[self.outgoing_used..]) {
                        self.outgoing_used += count;
                    }
                }
                _ => return,
            }
        }
    }
}

/// The incoming buffer's front (the plaintext and the free room in front of the records) and
/// its records, `start..end` clamped to the buffer.
fn split(incoming: &mut [u8], start: usize, end: usize) -> (&mut [u8], &mut [u8]) {
    let end = end.min(incoming.len());
    let start = start.min(end);
    let (front, rest) = incoming.split_at_mut(start);
    let (records, _) = rest.split_at_mut(end - start);
    (front, records)
}
