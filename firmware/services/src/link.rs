//! A connection to a provider or LAN host as the mail sessions see it: plain TCP, or TLS 1.3
//! over that TCP (homemx-tls's sans-I/O rustls client with the owner's trust), switchable once
//! from plain to TLS for STARTTLS. Owns the one set of connection buffers (TCP socket, TLS
//! records, trust anchor) and hands them to the courier (the delivery task), which runs its
//! connections (smarthost, backup MX, DynDNS, mailbox host) one after the other: the 25 KB exist
//! once, without a lock. A TLS link exists only after the server's certificate (or pinned key)
//! and its handshake signature were verified.
//!
//! Owns: the one set of connection buffers (`CONNECTION_BUFFERS`). Calls: `cpu_load`, `instrument`, `network`,
//! `random`, `tls_context`.

use embassy_net::tcp::TcpSocket;
use static_cell::ConstStaticCell;
use embedded_io_async::Write as _;
use homemx_tls::connection::{TlsConnection, Unbuffered};
use homemx_tls::{MinimumTls, TlsClient, TlsError, Trust, TrustError};
use homemx_wire::config::MinTls;

use crate::instrument::Operation;
use crate::random::DerivedRandom;

/// TLS record buffer for reading: one full TLS record (16 KB plaintext + overhead).
pub const TLS_READ_BUFFER: usize = homemx_tls::RECORD_BUFFER;
/// TLS record buffer for writing: the client's records are split to fit (application data
/// is sealed into the room left, see homemx-tls's record pump), and its largest handshake
/// message, the ClientHello (X25519 and P-256 key shares, no client certificates), is a few
/// hundred octets. 2 KB, as the server side's ([`homemx_tls::SERVER_OUTGOING_BUFFER`]); the
/// socket's transmit buffer is no larger, so bigger records sent nothing sooner.
pub const TLS_WRITE_BUFFER: usize = 2048;
/// Largest CA certificate (DER) a provider anchor may have.
pub const ANCHOR_CAPACITY: usize = 2048;

/// Octets each way of the courier's TCP socket buffers.
pub const SOCKET_BUFFER: usize = 2048;

/// The buffers of the one outgoing connection the courier runs at a time (to the smarthost,
/// the backup MX, the DynDNS service or the mailbox host): its TCP socket's, and its TLS
/// records' and trust anchor's when it is a provider's. Kept out of the courier's future, which
/// is built on the stack before it moves into the task (each byte of it counted twice).
pub struct ConnectionBuffers {
    /// Incoming records.
    pub read: [u8; TLS_READ_BUFFER],
    /// Outgoing records.
    pub write: [u8; TLS_WRITE_BUFFER],
    /// The provider's CA certificate, loaded from the vault for the handshake.
    pub anchor: [u8; ANCHOR_CAPACITY],
    /// The TCP socket's receive buffer.
    pub socket_receive: [u8; SOCKET_BUFFER],
    /// The TCP socket's transmit buffer.
    pub socket_transmit: [u8; SOCKET_BUFFER],
}

/// The connection buffers, handed once to the courier (the delivery task), which runs its
/// connections one after the other: no lock.
static CONNECTION_BUFFERS: ConstStaticCell<ConnectionBuffers> = ConstStaticCell::new(ConnectionBuffers {
    read: [0; TLS_READ_BUFFER],
    write: [0; TLS_WRITE_BUFFER],
    anchor: [0; ANCHOR_CAPACITY],
    socket_receive: [0; SOCKET_BUFFER],
    socket_transmit: [0; SOCKET_BUFFER],
});

/// The connection buffers, for the courier; `None` once taken.
pub fn take_connection_buffers() -> Option<&'static mut ConnectionBuffers> {
    CONNECTION_BUFFERS.try_take()
}


/// What a connection needs to switch to TLS (at once, or when the server's STARTTLS is
/// accepted).
pub struct TlsStart<'b, 't> {
    /// The TLS record buffers.
    pub read: &'b mut [u8],
    /// The TLS record buffers.
    pub write: &'b mut [u8],
    /// The name the server's certificate must carry (and SNI).
    pub server_name: &'t str,
    /// How the server is verified.
    pub trust: Trust<'t>,
    /// The courier's random: the handshake's is derived from it when the handshake begins
    /// (borrowed: a random moved in here, 312 bytes, sat in every future that held a start).
    pub random: &'t mut DerivedRandom,
    /// The handshake's instruction-count mark (which provider service this is).
    pub operation: Operation,
    /// The oldest TLS version the service accepts.
    pub minimum: MinimumTls,
}

/// The configured `min_tls` as homemx-tls takes it.
pub fn minimum_tls(configured: MinTls) -> MinimumTls {
    match configured {
        MinTls::Tls12 => MinimumTls::Tls12,
        MinTls::Tls13 => MinimumTls::Tls13,
    }
}

/// Plain TCP or TLS over it.
// The TLS variant is large (rustls's connection state): a link lives once, in the courier's
// future, and turns from plain into TLS in place, so boxing it would only move it to the heap.
#[allow(clippy::large_enum_variant)]
pub enum Link<'s, 'b> {
    /// Clear text (the LAN mailbox host, or a provider before STARTTLS).
    Plain(TcpSocket<'s>),
    /// TLS 1.3 over the socket, verified.
    Tls(TcpSocket<'s>, TlsClient<'b>),
    /// The connection failed; every operation fails.
    Broken,
}

/// Why a link operation failed.
#[derive(Clone, Debug)]
pub enum LinkError {
    /// TCP failed or the peer closed.
    Transport,
    /// TLS failed (handshake, certificate, record).
    Tls(TlsError),
    /// A CA anchor needs the wall clock, which is not known yet.
    TimeUnknown,
    /// The provisioned CA anchor is not a usable certificate.
    AnchorUnreadable,
}

impl LinkError {
    /// Whether the server was refused (its certificate, its handshake, its alert, or an
    /// unusable anchor): an alert for the owner. False when the connection broke or the time is
    /// not known yet: nothing about the server was learnt, and the next attempt may work.
    pub fn is_refusal(&self) -> bool {
        matches!(self, LinkError::Tls(_) | LinkError::AnchorUnreadable)
    }

    /// A short explanation for the owner's log.
    pub fn describe(&self) -> &'static str {
        match self {
            LinkError::Transport => "the connection failed",
            LinkError::Tls(error) => error.describe(),
            LinkError::TimeUnknown => "the time is not known yet (SNTP)",
            LinkError::AnchorUnreadable => "the provisioned CA certificate is unreadable",
        }
    }
}

impl core::fmt::Display for LinkError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str(self.describe())
    }
}

impl core::error::Error for LinkError {}

impl embedded_io_async::Error for LinkError {
    fn kind(&self) -> embedded_io_async::ErrorKind {
        match self {
            LinkError::Transport => embedded_io_async::ErrorKind::ConnectionReset,
            _ => embedded_io_async::ErrorKind::Other,
        }
    }
}

/// A link is the transport of the sessions' one driver loop (`homemx_exchange`).
impl embedded_io_async::ErrorType for Link<'_, '_> {
    type Error = LinkError;
}

impl embedded_io_async::Read for Link<'_, '_> {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, LinkError> {
        Link::read(self, buffer).await
    }
}

impl embedded_io_async::Write for Link<'_, '_> {
    /// Writes (and pushes out) all of `data`.
    async fn write(&mut self, data: &[u8]) -> Result<usize, LinkError> {
        Link::write_all(self, data).await.map(|()| data.len())
    }
    /// Nothing to do: every write pushed its bytes out.
    async fn flush(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

impl defmt::Format for LinkError {
    fn format(&self, formatter: defmt::Formatter) {
        defmt::write!(formatter, "{=str}", self.describe())
    }
}

/// Hands everything the TLS connection (client or server side) has queued to the socket, as a
/// plain link's write does: the stack sends it at once. No flush: embassy-net's waits until the
/// peer acknowledged everything, a round trip (and the peer's delayed ACK) per record. Closing
/// ([`crate::network::release`]) waits for the last of it. A failure the pump met while it
/// resumed a paused flight ([`TlsConnection::output_sent`]) is returned once its alert went
/// out: a handshake that ends there is not complete, for the client and the server alike.
pub(crate) async fn send_records<C: Unbuffered>(socket: &mut TcpSocket<'_>, tls: &mut TlsConnection<'_, C>) -> Result<(), LinkError> {
    while !tls.output().is_empty() {
        match socket.write(tls.output()).await {
            Ok(0) | Err(_) => return Err(LinkError::Transport),
            Ok(count) => tls.output_sent(count),
        }
    }
    match tls.failure() {
        Some(error) => Err(LinkError::Tls(error.clone())),
        None => Ok(()),
    }
}

/// Reads what the peer sent into the TLS connection and processes it; EOF and reset are errors.
pub(crate) async fn receive_records<C: Unbuffered>(socket: &mut TcpSocket<'_>, tls: &mut TlsConnection<'_, C>) -> Result<(), LinkError> {
    let count = match socket.read(tls.receive_buffer()).await {
        Ok(0) | Err(_) => return Err(LinkError::Transport),
        Ok(count) => count,
    };
    let result = tls.received(count).map_err(LinkError::Tls);
    // Handshake answers, or the fatal alert rustls chose for a refusal.
    send_records(socket, tls).await?;
    result
}

/// Reads decrypted data (0: the peer sent close_notify), receiving records as needed.
pub(crate) async fn read_plaintext<C: Unbuffered>(socket: &mut TcpSocket<'_>, tls: &mut TlsConnection<'_, C>, buffer: &mut [u8]) -> Result<usize, LinkError> {
    loop {
        if !tls.plaintext().is_empty() {
            return Ok(tls.read(buffer));
        }
        if tls.peer_closed() {
            return Ok(0);
        }
        receive_records(socket, tls).await?;
    }
}

/// Encrypts all of `data` and sends the records.
pub(crate) async fn write_plaintext<C: Unbuffered>(socket: &mut TcpSocket<'_>, tls: &mut TlsConnection<'_, C>, data: &[u8]) -> Result<(), LinkError> {
    let mut rest = data;
    while !rest.is_empty() {
        let written = tls.write(rest).map_err(LinkError::Tls)?;
        if written == 0 && tls.output().is_empty() {
            return Err(LinkError::Transport);
        }
        send_records(socket, tls).await?;
        rest = &rest[written..];
    }
    Ok(())
}

/// Sends close_notify (once the handshake completed), then nothing more.
pub(crate) async fn close_tls<C: Unbuffered>(socket: &mut TcpSocket<'_>, tls: &mut TlsConnection<'_, C>) {
    if tls.close().is_ok() {
        let _ = send_records(socket, tls).await;
    }
}

/// The client side of a handshake about to start: the configuration (trust anchors, verifier,
/// minimum version) and the connection with its ClientHello, built in a frame of its own. Never
/// inlined: inlined into [`Link::start_tls`], their temporaries (about 3 KB) stayed in its
/// frame through the whole handshake, on the deepest stack path measured in QEMU (an ACME
/// issuance's handshake, certificate verification included, in the delivery task).
#[inline(never)]
fn new_client<'b>(
    random: &mut DerivedRandom,
    trust: Trust<'_>,
    minimum: MinimumTls,
    server_name: &str,
    read_buffer: &'b mut [u8],
    write_buffer: &'b mut [u8],
) -> Result<TlsClient<'b>, LinkError> {
    let (provider, clock) = crate::tls_context::prepare(random.derive());
    let config = homemx_tls::client_config_with_minimum(&provider, clock, trust, minimum).map_err(|error| match error {
        TrustError::TimeUnknown => LinkError::TimeUnknown,
        TrustError::AnchorUnreadable => LinkError::AnchorUnreadable,
    })?;
    TlsClient::new(config, server_name, read_buffer, write_buffer).map_err(LinkError::Tls)
}

impl<'s, 'b> Link<'s, 'b> {
    /// Reads what arrived (0: closed).
    pub async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, LinkError> {
        match self {
            Link::Plain(socket) => socket.read(buffer).await.map_err(|_| LinkError::Transport),
            Link::Tls(socket, client) => read_plaintext(socket, client, buffer).await,
            Link::Broken => Err(LinkError::Transport),
        }
    }

    /// Writes all of `data` and pushes it out.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), LinkError> {
        match self {
            Link::Plain(socket) => socket.write_all(data).await.map_err(|_| LinkError::Transport),
            Link::Tls(socket, client) => write_plaintext(socket, client, data).await,
            Link::Broken => Err(LinkError::Transport),
        }
    }

    /// Switches a plain link to TLS as `start` says. On failure the fatal alert goes out and
    /// the link is broken: nothing more is sent over this connection.
    pub async fn start_tls(&mut self, start: TlsStart<'b, '_>) -> Result<(), LinkError> {
        let TlsStart { read: read_buffer, write: write_buffer, server_name, trust, random, operation, minimum } = start;
        let Link::Plain(mut socket) = core::mem::replace(self, Link::Broken) else {
            return Err(LinkError::Transport);
        };
        let measurement = crate::instrument::begin(operation);
        let started = embassy_time::Instant::now();
        let cycles_before = crate::cpu_load::busy_core_clock_counts();
        // The error is taken out of the match before the socket is abandoned: awaiting inside
        // the match arm kept the whole result (a client's 760 bytes) in this future.
        let mut client = 'created: {
            let error = match new_client(random, trust, minimum, server_name, read_buffer, write_buffer) {
                Ok(client) => break 'created client,
                Err(error) => error,
            };
            abandon(socket).await;
            return Err(error);
        };
        let mut outcome = send_records(&mut socket, &mut client).await;
        while outcome.is_ok() && client.is_handshaking() {
            outcome = receive_records(&mut socket, &mut client).await;
        }
        match outcome {
            Ok(()) => {
                defmt::info!(
                    "tls: {=str} ({=str}) with {=str}: certificate and handshake signature verified in {=u64} ms, busy core-clock counts {=u64}",
                    client.version_name(),
                    client.suite_name(),
                    server_name,
                    started.elapsed().as_millis(),
                    crate::cpu_load::busy_core_clock_counts() - cycles_before
                );
                *self = Link::Tls(socket, client);
                measurement.end();
                Ok(())
            }
            Err(error) => {
                abandon(socket).await;
                Err(error)
            }
        }
    }

    /// The negotiated cipher suite, for the log ("plain text" without TLS).
    pub fn suite_name(&self) -> &'static str {
        match self {
            Link::Tls(_, client) => client.suite_name(),
            _ => "plain text",
        }
    }

    /// The negotiated version, for the log ("plain text" without TLS).
    pub fn version_name(&self) -> &'static str {
        match self {
            Link::Tls(_, client) => client.version_name(),
            _ => "plain text",
        }
    }

    /// Ends the connection: TLS close_notify if TLS, then the TCP close; the link is broken
    /// after it. Closes in place: a link moved into this future (it was `close(self)`) took
    /// 1.5 KB more in every caller's future.
    pub async fn close(&mut self) {
        match self {
            Link::Plain(socket) => crate::network::release(socket).await,
            Link::Tls(socket, client) => {
                close_tls(socket, client).await;
                crate::network::release(socket).await
            }
            Link::Broken => {}
        }
        *self = Link::Broken;
    }
}

/// Resets a connection that must not carry anything more.
async fn abandon(mut socket: TcpSocket<'_>) {
    socket.abort();
    let _ = socket.flush().await;
}
