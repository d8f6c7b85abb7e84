//! A connection to a provider or LAN host as the mail sessions see it: plain TCP, or TLS 1.3
//! over that TCP (embedded-tls with homemx-tls's trust), switchable once from plain to TLS for
//! STARTTLS. Owns the one set of TLS record buffers: provider connections (smarthost, backup
//! MX, DynDNS) take turns, so the 21 KB of TLS buffers exist once, not per task.

use embassy_net::tcp::TcpSocket;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::mutex::{Mutex, MutexGuard};
use embedded_io_async::Write as _;
use embedded_tls::{Aes128GcmSha256, TlsConfig, TlsConnection, TlsContext, TlsError};
use homemx_tls::{Provider, Trust};

use crate::random::DerivedRandom;
use crate::wall_clock::WallClock;

/// TLS record buffer for reading: one full TLS record (16 KB plaintext + overhead).
pub const TLS_READ_BUFFER: usize = 16_640;
/// TLS record buffer for writing (records are split to fit).
pub const TLS_WRITE_BUFFER: usize = 4096;
/// Largest CA certificate (DER) a provider anchor may have.
pub const ANCHOR_CAPACITY: usize = 2048;

/// The buffers of the one TLS connection the appliance runs at a time.
pub struct TlsBuffers {
    /// Incoming records.
    pub read: [u8; TLS_READ_BUFFER],
    /// Outgoing records.
    pub write: [u8; TLS_WRITE_BUFFER],
    /// The provider's CA certificate, loaded from the vault for the handshake.
    pub anchor: [u8; ANCHOR_CAPACITY],
}

/// The TLS buffers; whoever holds the guard may run one TLS connection.
pub static TLS_BUFFERS: Mutex<CriticalSectionRawMutex, TlsBuffers> =
    Mutex::new(TlsBuffers { read: [0; TLS_READ_BUFFER], write: [0; TLS_WRITE_BUFFER], anchor: [0; ANCHOR_CAPACITY] });

/// Takes the TLS buffers (waits while another provider connection uses them).
pub async fn tls_buffers() -> MutexGuard<'static, CriticalSectionRawMutex, TlsBuffers> {
    TLS_BUFFERS.lock().await
}

/// A trust decision as loaded from the vault (owns nothing: a CA anchor's bytes are in the
/// TLS buffers' `anchor` field, `length` long).
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum TrustSource {
    /// A CA certificate of this many bytes sits in [`TlsBuffers::anchor`].
    CaAnchor(usize),
    /// The server key's SPKI SHA-256.
    PinnedKey([u8; 32]),
}

impl TrustSource {
    /// Whether it can be used now: a CA anchor needs the wall clock for validity dates (the
    /// caller defers until SNTP has answered); a pinned key needs no time.
    pub fn usable_now(&self) -> bool {
        !matches!(self, TrustSource::CaAnchor(_)) || crate::wall_clock::unix_seconds().is_some()
    }

    /// The trust handed to the TLS provider; `anchor` holds a CA anchor's bytes.
    pub fn trust<'a>(&self, anchor: &'a [u8]) -> Trust<'a> {
        match *self {
            TrustSource::CaAnchor(length) => Trust::CaAnchor(&anchor[..length.min(anchor.len())]),
            TrustSource::PinnedKey(pin) => Trust::PinnedKey(pin),
        }
    }

    /// How the server was verified, for the log and the status page.
    pub fn description(&self) -> &'static str {
        match self {
            TrustSource::CaAnchor(_) => "CA anchor + host name",
            TrustSource::PinnedKey(_) => "pinned server key",
        }
    }
}

/// The output side of a sans-I/O client session (SMTP, POP3).
pub trait SessionOutput {
    /// Bytes to send now.
    fn output(&self) -> &[u8];
    /// `octets` of them were sent.
    fn output_sent(&mut self, octets: usize);
}

impl SessionOutput for homemx_smtp::client::ClientSession<'_> {
    fn output(&self) -> &[u8] {
        homemx_smtp::client::ClientSession::output(self)
    }
    fn output_sent(&mut self, octets: usize) {
        homemx_smtp::client::ClientSession::output_sent(self, octets)
    }
}

impl SessionOutput for homemx_pop3::Pop3Session<'_> {
    fn output(&self) -> &[u8] {
        homemx_pop3::Pop3Session::output(self)
    }
    fn output_sent(&mut self, octets: usize) {
        homemx_pop3::Pop3Session::output_sent(self, octets)
    }
}

/// Sends a session's pending output over `link`; false if the link failed.
pub async fn flush(link: &mut Link<'_, '_>, session: &mut impl SessionOutput) -> bool {
    let pending = session.output().len();
    if pending == 0 {
        return true;
    }
    match link.write_all(session.output()).await {
        Ok(()) => {
            session.output_sent(pending);
            true
        }
        Err(_) => false,
    }
}

/// Plain TCP or TLS over it.
pub enum Link<'s, 'b> {
    /// Clear text (the LAN mailbox host, or a provider before STARTTLS).
    Plain(TcpSocket<'s>),
    /// TLS 1.3 over the socket.
    Tls(TlsConnection<'b, TcpSocket<'s>, Aes128GcmSha256>),
    /// The connection failed; every operation fails.
    Broken,
}

/// Why a link operation failed.
#[derive(Clone, Copy, Debug, defmt::Format)]
pub enum LinkError {
    /// TCP failed or the peer closed.
    Transport,
    /// TLS failed (handshake, certificate, record).
    Tls(TlsError),
}

impl<'s, 'b> Link<'s, 'b> {
    /// Reads what arrived (0: closed).
    pub async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, LinkError> {
        match self {
            Link::Plain(socket) => socket.read(buffer).await.map_err(|_| LinkError::Transport),
            Link::Tls(connection) => connection.read(buffer).await.map_err(LinkError::Tls),
            Link::Broken => Err(LinkError::Transport),
        }
    }

    /// Writes all of `data` and pushes it out.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), LinkError> {
        match self {
            Link::Plain(socket) => socket.write_all(data).await.map_err(|_| LinkError::Transport),
            Link::Tls(connection) => {
                let mut rest = data;
                while !rest.is_empty() {
                    let written = connection.write(rest).await.map_err(LinkError::Tls)?;
                    if written == 0 {
                        return Err(LinkError::Transport);
                    }
                    rest = &rest[written..];
                }
                connection.flush().await.map_err(LinkError::Tls)
            }
            Link::Broken => Err(LinkError::Transport),
        }
    }

    /// Switches a plain link to TLS: handshake with `server_name` (SNI and, with a CA anchor,
    /// the name the certificate must carry) and `trust`. On failure the link is broken.
    pub async fn start_tls(
        &mut self,
        read_buffer: &'b mut [u8],
        write_buffer: &'b mut [u8],
        server_name: &str,
        trust: Trust<'_>,
        random: DerivedRandom,
    ) -> Result<(), LinkError> {
        let Link::Plain(socket) = core::mem::replace(self, Link::Broken) else {
            return Err(LinkError::Transport);
        };
        let mut connection = TlsConnection::new(socket, read_buffer, write_buffer);
        let config = TlsConfig::new().with_server_name(server_name);
        let provider: Provider<'_, _, WallClock> = Provider::new(random.into_rng(), trust);
        let started = embassy_time::Instant::now();
        let cycles_before = crate::cpu_load::busy_core_clock_counts();
        match connection.open(TlsContext::new(&config, provider)).await {
            Ok(()) => {
                defmt::info!(
                    "tls: TLS 1.3 handshake with {=str} verified in {=u64} ms, busy core-clock counts {=u64}",
                    server_name,
                    started.elapsed().as_millis(),
                    crate::cpu_load::busy_core_clock_counts() - cycles_before
                );
                *self = Link::Tls(connection);
                Ok(())
            }
            Err(error) => {
                // Take the socket back and reset it: nothing more goes over this connection.
                let (Ok(socket) | Err((socket, _))) = connection.close().await;
                *self = Link::Plain(socket);
                self.abandon().await;
                Err(LinkError::Tls(error))
            }
        }
    }

    /// Ends the connection: TLS close_notify if TLS, then the TCP close.
    pub async fn close(self) {
        match self {
            Link::Plain(mut socket) => crate::network::release(&mut socket).await,
            Link::Tls(connection) => match connection.close().await {
                Ok(mut socket) | Err((mut socket, _)) => crate::network::release(&mut socket).await,
            },
            Link::Broken => {}
        }
    }

    async fn abandon(&mut self) {
        if let Link::Plain(socket) = core::mem::replace(self, Link::Broken) {
            let mut socket = socket;
            socket.abort();
            let _ = socket.flush().await;
        }
    }
}
