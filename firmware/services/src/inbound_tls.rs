//! TLS for the mail listeners: STARTTLS on ports 25 and 587, implicit TLS on 465 (RFC 3207,
//! RFC 8314), with homemx-tls's rustls server over the session's TCP socket, presenting the
//! device's identity (its P-256 key and the chain the store keeps).
//!
//! - **Permits.** At most `Sizing::tls_sessions` run at once ([`TlsPermit`]). A permit holds
//!   one of that many static record buffers (16.6 KB in, 2 KB out; the decrypted data not yet
//!   read waits in the incoming one; zeroed when the permit goes); rustls's state lives on the
//!   heap while the session runs in TLS, which is sized for them (`homemx_board::heap_for`), so
//!   no permit left is a refusal (`454 4.7.0` at STARTTLS, `421 4.7.0` on 465), never a
//!   failed allocation.
//! - **Configuration.** Built once from the store's key and chain and shared by every session,
//!   rebuilt when the identity changes (a new chain, a renewal) and forgotten at lock, so the
//!   key is not kept in RAM while the device is locked.
//! - **Handshake.** Bounded by [`HANDSHAKE_TIMEOUT`]: a client that stalls, truncates or sends
//!   garbage costs its slot for that long at most; a failure sends rustls's alert and closes.
//!
//! Owns: the server configuration cache, the inbound TLS random stream, the permits and their
//! record buffers.
//! Calls: `event_log`, `instrument`, `link` (the record pump's socket I/O), `random`, `store`, `tls_context`.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::{RefCell, UnsafeCell};
use core::sync::atomic::{AtomicBool, Ordering};

use embassy_net::tcp::TcpSocket;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time::Duration;
use homemx_smtp::TlsDetails;
use homemx_tls::{TlsError, TlsServer};
use rustls::pki_types::CertificateDer;
use rustls::ServerConfig;

use crate::instrument::Operation;
use crate::link::LinkError;
use crate::random::DerivedRandom;

/// Inbound TLS sessions at once (the board's figure).
pub const TLS_SESSIONS: usize = crate::bsp::SIZING.tls_sessions;
/// Outgoing records: homemx-tls caps the server's records to fit, so the first flight (a CA
/// chain of up to 6 KB and about 500 octets) goes out a record at a time, and application
/// data in records this size at most.
const OUTGOING_BUFFER: usize = homemx_tls::SERVER_OUTGOING_BUFFER;
/// A session's two record buffers, in [`RECORD_BUFFERS`].
const SESSION_BUFFERS: usize = homemx_tls::RECORD_BUFFER + OUTGOING_BUFFER;
/// How long a client has for the handshake, from `220` (or the connection on 465).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

// The heap holds the provider connections and every permitted session.
const _: () = assert!(crate::bsp::SIZING.heap_bytes >= homemx_board::heap_for(TLS_SESSIONS));
/// What rustls may hold for a session across its awaits: the queued first flight with the
/// largest chain the store keeps and the handshake state (homemx-tls's `server_heap` test
/// asserts it, measured on the host: 9,173 B with a 5,826-octet chain; 2.6 KB once open).
const RUSTLS_HELD: usize = 9_728;
// What rustls holds and the server itself fit a session's share of the heap (its buffers are
// static, and its decrypted data waits in the incoming one).
const _: () = assert!(RUSTLS_HELD + core::mem::size_of::<TlsServer<'static>>() < homemx_board::TLS_SESSION_HEAP_BYTES);

/// The sessions' record buffers, one per permit, in a static: a session's 18.7 KB is one
/// fixed place, not a hole the heap must find among rustls's small allocations (first-fit
/// heaps fragment), and the heap holds only rustls's state.
struct RecordBuffers {
    taken: [AtomicBool; TLS_SESSIONS],
    memory: [UnsafeCell<[u8; SESSION_BUFFERS]>; TLS_SESSIONS],
}

// SAFETY: a buffer is reached only through the one `TlsPermit` that won its `taken` flag
// (compare-exchange), until that permit is dropped.
unsafe impl Sync for RecordBuffers {}

static RECORD_BUFFERS: RecordBuffers = RecordBuffers {
    taken: [const { AtomicBool::new(false) }; TLS_SESSIONS],
    memory: [const { UnsafeCell::new([0; SESSION_BUFFERS]) }; TLS_SESSIONS],
};

/// One inbound TLS session's admission and record buffers (the incoming buffer, then the
/// outgoing one): one of the [`TLS_SESSIONS`] in a static, zeroed when the permit is dropped
/// (the decrypted data a session left in them goes with it).
pub struct TlsPermit {
    buffers: &'static mut [u8; SESSION_BUFFERS],
    taken: &'static AtomicBool,
}

impl TlsPermit {
    /// A permit with its buffers; `None` when [`TLS_SESSIONS`] are running.
    pub fn take() -> Option<TlsPermit> {
        let index = RECORD_BUFFERS
            .taken
            .iter()
            .position(|taken| taken.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok())?;
        // SAFETY: this permit won the buffer's flag, so no other reference to it exists until
        // the permit is dropped (which gives the flag back after its last use of the buffer).
        let buffers = unsafe { &mut *RECORD_BUFFERS.memory[index].get() };
        Some(TlsPermit { buffers, taken: &RECORD_BUFFERS.taken[index] })
    }
}

impl Drop for TlsPermit {
    fn drop(&mut self) {
        self.buffers.fill(0);
        self.taken.store(false, Ordering::Release);
    }
}

/// The configuration in use and the identity generation it was built at.
struct Cached {
    generation: u32,
    config: Arc<ServerConfig>,
}

static CONFIG: Mutex<CriticalSectionRawMutex, RefCell<Option<Cached>>> = Mutex::new(RefCell::new(None));
/// The stream each handshake's randomness is derived from (set at boot).
static RANDOM: Mutex<CriticalSectionRawMutex, RefCell<Option<DerivedRandom>>> = Mutex::new(RefCell::new(None));

/// Gives the listeners their random stream. Call once at boot.
pub fn init(random: DerivedRandom) {
    RANDOM.lock(|cell| *cell.borrow_mut() = Some(random));
}

/// Forgets the configuration (and so the key): at lock and factory reset.
pub fn forget() {
    CONFIG.lock(|cell| *cell.borrow_mut() = None);
}

fn derived_random() -> Option<DerivedRandom> {
    RANDOM.lock(|cell| cell.borrow_mut().as_mut().map(DerivedRandom::derive))
}

/// Whether the listeners can offer TLS: a certificate was made or installed (the store
/// publishes its summary then).
pub fn available() -> bool {
    crate::store::tls_certificate().is_some()
}

/// The configuration for the device's current identity if it is built already (the usual
/// case: it is rebuilt only after a change of identity), without waiting for anything.
pub fn cached_server_config() -> Option<Arc<ServerConfig>> {
    let generation = crate::store::tls_identity_generation();
    CONFIG.lock(|cell| cell.borrow().as_ref().filter(|cached| cached.generation == generation).map(|cached| cached.config.clone()))
}

/// The configuration for the device's current identity, built from the store when the
/// identity changed ([`cached_server_config`] otherwise); `None` while locked or before the
/// first certificate (STARTTLS is then not offered). Its future is about 1.1 KB on the H5: the
/// mail sessions await it in a slot they share (`mx`), not each in its own.
pub async fn server_config() -> Option<Arc<ServerConfig>> {
    let cached = cached_server_config();
    if cached.is_some() {
        return cached;
    }
    let generation = crate::store::tls_identity_generation();
    forget();
    let (key, chain) = crate::store::tls_server_identity().await?;
    let mut certificates = Vec::new();
    let mut rest = chain.as_slice();
    while !rest.is_empty() {
        let (certificate, after) = homemx_tls::der::expect(rest, homemx_tls::der::SEQUENCE)?;
        certificates.push(CertificateDer::from(certificate.whole.to_vec()));
        rest = after;
    }
    let (provider, clock) = crate::tls_context::prepare(derived_random()?);
    let config = match homemx_tls::server_config(&provider, clock, certificates, key.signing_key()) {
        Ok(config) => config,
        Err(error) => {
            crate::event_warning!("tls: the stored certificate chain cannot be presented: {:?}", defmt::Debug2Format(&error));
            return None;
        }
    };
    CONFIG.lock(|cell| *cell.borrow_mut() = Some(Cached { generation, config: config.clone() }));
    Some(config)
}

/// Why a handshake did not complete.
#[derive(Debug)]
pub enum HandshakeFailure {
    /// Locked, or no certificate yet.
    NoConfiguration,
    /// The client did not finish within [`HANDSHAKE_TIMEOUT`].
    TimedOut,
    /// The connection broke or the client closed it.
    Transport,
    /// TLS failed (garbage, no common version or suite, the client's alert).
    Tls(TlsError),
}

impl HandshakeFailure {
    /// A short explanation for the owner's log.
    pub fn describe(&self) -> &'static str {
        match self {
            HandshakeFailure::NoConfiguration => "no certificate to present",
            HandshakeFailure::TimedOut => "the client did not finish the handshake in time",
            HandshakeFailure::Transport => "the connection broke during the handshake",
            HandshakeFailure::Tls(error) => error.describe_inbound(),
        }
    }
}

/// Runs the server handshake on `socket` with the permit's buffers, presenting `config` (the
/// device's identity, from [`server_config`]; `None`: there is none to present). On failure
/// rustls's alert (if any) was sent; the caller closes the connection.
/// The server is on the heap (its 1.2 KB within the session's share, `TLS_SESSION_HEAP_BYTES`)
/// while the session runs in TLS, not in every session task's future.
pub async fn handshake<'b>(
    socket: &mut TcpSocket<'static>,
    permit: &'b mut TlsPermit,
    config: Option<Arc<ServerConfig>>,
) -> Result<Box<TlsServer<'b>>, HandshakeFailure> {
    let config = config.ok_or(HandshakeFailure::NoConfiguration)?;
    let measurement = crate::instrument::begin(Operation::TlsHandshakeServer);
    let server = handshake_with(socket, permit, config).await?;
    measurement.end();
    Ok(server)
}

/// The server for one handshake, on the heap, built in a frame of its own: inlined into
/// [`handshake_with`], rustls's connection state was assembled in stack temporaries (its poll
/// frame was 5 KB) that stayed reserved under every record of the handshake, on the deepest
/// stack path of an inbound STARTTLS.
#[inline(never)]
fn new_server(permit: &mut TlsPermit, config: Arc<ServerConfig>) -> Result<Box<TlsServer<'_>>, HandshakeFailure> {
    let random = derived_random().ok_or(HandshakeFailure::NoConfiguration)?;
    // Keys rustls's random stream afresh for this handshake (server random, key share).
    let _ = crate::tls_context::prepare(random);
    let (incoming, outgoing) = permit.buffers.split_at_mut(homemx_tls::RECORD_BUFFER);
    Ok(Box::new(TlsServer::new(config, incoming, outgoing).map_err(HandshakeFailure::Tls)?))
}

/// [`handshake`] with another configuration (the ACME TLS-ALPN-01 validation's), not measured.
pub async fn handshake_with<'b>(
    socket: &mut TcpSocket<'_>,
    permit: &'b mut TlsPermit,
    config: Arc<ServerConfig>,
) -> Result<Box<TlsServer<'b>>, HandshakeFailure> {
    let mut server = new_server(permit, config)?;
    let exchange = async {
        // A failure met while the last records were being sent (the pump resumes a paused
        // flight then) ends the loop with an error too (`link::send_records`).
        while server.is_handshaking() {
            crate::link::receive_records(socket, &mut *server).await?;
        }
        Ok::<(), LinkError>(())
    };
    match embassy_time::with_timeout(HANDSHAKE_TIMEOUT, exchange).await {
        Ok(Ok(())) => Ok(server),
        Ok(Err(LinkError::Tls(error))) => Err(HandshakeFailure::Tls(error)),
        Ok(Err(_)) => Err(HandshakeFailure::Transport),
        Err(_) => Err(HandshakeFailure::TimedOut),
    }
}

/// What the session's `Received:` header says of the connection.
pub fn details(server: &TlsServer<'_>) -> TlsDetails {
    TlsDetails { protocol: server.version_name(), cipher: server.suite_name() }
}

/// A mail session's connection: clear text, or TLS over the same socket. The transport of the
/// sessions' driver loop (`homemx_exchange`).
pub enum InboundStream<'s, 'b> {
    /// Before STARTTLS (or without it).
    Plain(&'s mut TcpSocket<'static>),
    /// After the handshake (the server on the heap, see [`handshake`]).
    Tls(&'s mut TcpSocket<'static>, Box<TlsServer<'b>>),
    /// Given up (a failed handshake): every operation fails.
    Closed,
}

impl InboundStream<'_, '_> {
    /// Sends close_notify if in TLS (the caller then releases the socket).
    pub async fn close(&mut self) {
        if let InboundStream::Tls(socket, server) = self {
            crate::link::close_tls(socket, &mut **server).await;
        }
    }
}

impl embedded_io_async::ErrorType for InboundStream<'_, '_> {
    type Error = LinkError;
}

impl embedded_io_async::Read for InboundStream<'_, '_> {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, LinkError> {
        match self {
            InboundStream::Plain(socket) => socket.read(buffer).await.map_err(|_| LinkError::Transport),
            InboundStream::Tls(socket, server) => crate::link::read_plaintext(socket, &mut **server, buffer).await,
            InboundStream::Closed => Err(LinkError::Transport),
        }
    }
}

impl embedded_io_async::Write for InboundStream<'_, '_> {
    /// Writes (and pushes out) all of `data`.
    async fn write(&mut self, data: &[u8]) -> Result<usize, LinkError> {
        match self {
            InboundStream::Plain(socket) => {
                embedded_io_async::Write::write_all(*socket, data).await.map_err(|_| LinkError::Transport)?;
                Ok(data.len())
            }
            InboundStream::Tls(socket, server) => crate::link::write_plaintext(socket, &mut **server, data).await.map(|()| data.len()),
            InboundStream::Closed => Err(LinkError::Transport),
        }
    }

    async fn flush(&mut self) -> Result<(), LinkError> {
        match self {
            InboundStream::Plain(socket) => embedded_io_async::Write::flush(*socket).await.map_err(|_| LinkError::Transport),
            InboundStream::Tls(..) => Ok(()),
            InboundStream::Closed => Err(LinkError::Transport),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The permits are the static buffers: as many as `TLS_SESSIONS`, one more refused, and a
    /// buffer given back is handed out again zeroed (a finished session's decrypted data does
    /// not reach the next one). The only test in this binary that takes permits.
    #[test]
    fn permits_are_the_static_buffers_and_come_back_zeroed() {
        let mut permits: Vec<TlsPermit> = (0..TLS_SESSIONS).map(|_| TlsPermit::take().expect("a permit")).collect();
        assert!(TlsPermit::take().is_none(), "no permit beyond the buffers");
        permits[1].buffers.fill(0x5a);
        let buffer = permits[1].buffers.as_ptr();
        drop(permits.remove(1));
        let again = TlsPermit::take().expect("the permit given back");
        assert_eq!(again.buffers.as_ptr(), buffer, "the same static buffer");
        assert!(again.buffers.iter().all(|&octet| octet == 0), "zeroed when given back");
        assert!(TlsPermit::take().is_none());
    }
}
