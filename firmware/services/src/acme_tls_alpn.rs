//! The ACME TLS-ALPN-01 responder on port 443 (RFC 8737), for lines whose port 80 is blocked.
//!
//! Port 443 listens only while an ACME attempt with `challenge = "tls-alpn-01"` runs: `acme`
//! runs [`respond`] beside its requests and drops it when the attempt ends, so at any other time
//! a connection to 443 is reset. Its socket buffers are on the heap for that time only.
//!
//! While a challenge is pending ([`publish`]), a handshake that offers ALPN `acme-tls/1` gets
//! the validation certificate (self-signed, the host name and the critical acmeIdentifier
//! extension with the key authorization's digest; homemx-tls's `tls_alpn_01_server_config`).
//! Every other handshake (no ALPN, another protocol, no challenge pending) fails with rustls's
//! alert and no certificate. After a completed handshake the responder sends close_notify and
//! closes (RFC 8737 section 3: no data is exchanged). Each connection takes an inbound TLS
//! permit (`inbound_tls::TlsPermit`), so a flood of handshakes cannot exhaust the heap; three
//! sockets listen, as a CA validates from several places at once. Each handshake is bounded by
//! `inbound_tls::HANDSHAKE_TIMEOUT`.
//!
//! Owns: the validation configuration while a challenge is pending, the port-443 socket during
//! an attempt. Calls: `event_log`, `inbound_tls` (permit, handshake), `link`, `network`,
//! `random`, `tls_context`.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::RefCell;

use embassy_net::tcp::TcpSocket;
use embassy_futures::join::join_array;
use embassy_net::Stack;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time::{Duration, Timer};
use homemx_acme::client::PendingChallenge;
use homemx_tls::identity::{DeviceKey, HostName};
use rustls::pki_types::CertificateDer;
use rustls::ServerConfig;

use crate::inbound_tls::TlsPermit;
use crate::random::DerivedRandom;

/// The HTTPS port, where an ACME CA validates TLS-ALPN-01.
pub const TLS_ALPN_PORT: u16 = 443;
/// The socket's buffers: a ClientHello arrives in a few segments, the answer is the TLS
/// layer's (it waits for the socket to drain).
const SOCKET_BUFFER: usize = 1536;
/// Sockets listening at once: a CA validates from several places at the same time (Let's
/// Encrypt's multi-perspective validation; Pebble makes three connections).
const LISTENERS: usize = 3;

/// The validation configuration of the pending challenge and that challenge's token.
struct Validation {
    token: alloc::string::String,
    config: Arc<ServerConfig>,
}

static VALIDATION: Mutex<CriticalSectionRawMutex, RefCell<Option<Validation>>> = Mutex::new(RefCell::new(None));

/// Makes the validation certificate for `challenge` (a TLS-ALPN-01 challenge) and offers it
/// on port 443; `None` withdraws it. A challenge already published is not made again.
pub fn publish(challenge: Option<&PendingChallenge>, key: &DeviceKey, host: &HostName, now: u64, random: &mut DerivedRandom) {
    let Some(challenge) = challenge else {
        if VALIDATION.lock(|validation| validation.borrow_mut().take()).is_some() {
            crate::event_info!("acme: no tls-alpn-01 challenge pending any more");
        }
        return;
    };
    let current = VALIDATION.lock(|validation| validation.borrow().as_ref().is_some_and(|validation| validation.token == challenge.token));
    if current {
        return;
    }
    let mut certificate_random = random.rng();
    // Valid from a minute ago (the CA's clock may lag), for a day.
    let certificate = match challenge.tls_alpn_01_certificate(key, host, now.saturating_sub(60), &mut certificate_random) {
        Ok(certificate) => certificate,
        Err(error) => {
            crate::event_warning!("acme: the tls-alpn-01 certificate could not be made: {:?}", error);
            return;
        }
    };
    let (provider, clock) = crate::tls_context::prepare(random.derive());
    match homemx_tls::tls_alpn_01_server_config(&provider, clock, CertificateDer::from(certificate), key.signing_key()) {
        Ok(config) => {
            VALIDATION.lock(|validation| *validation.borrow_mut() = Some(Validation { token: challenge.token.clone(), config }));
            crate::event_info!("acme: answering the tls-alpn-01 challenge on port 443, token {}", challenge.token.as_str());
        }
        Err(error) => crate::event_warning!("acme: the tls-alpn-01 configuration failed: {:?}", error),
    }
}

fn current_config() -> Option<Arc<ServerConfig>> {
    VALIDATION.lock(|validation| validation.borrow().as_ref().map(|validation| validation.config.clone()))
}

/// Listens on port 443 with [`LISTENERS`] sockets and answers TLS-ALPN-01 handshakes until
/// dropped (the ACME attempt ends). Never returns; without heap for a listener's buffers that
/// listener does not listen (a validation may then fail, and the attempt reports it).
pub async fn respond(stack: Stack<'static>) -> core::convert::Infallible {
    let [never, ..] = join_array(core::array::from_fn::<_, LISTENERS, _>(|_| listen(stack))).await;
    never
}

/// One listening socket (smoltcp has no backlog: each socket takes one connection).
async fn listen(stack: Stack<'static>) -> core::convert::Infallible {
    let mut receive: Vec<u8> = Vec::new();
    let mut transmit: Vec<u8> = Vec::new();
    if receive.try_reserve_exact(SOCKET_BUFFER).is_err() || transmit.try_reserve_exact(SOCKET_BUFFER).is_err() {
        crate::event_warning!("acme: no heap for a port 443 listener");
        return core::future::pending().await;
    }
    receive.resize(SOCKET_BUFFER, 0);
    transmit.resize(SOCKET_BUFFER, 0);
    loop {
        let mut socket = TcpSocket::new(stack, &mut receive, &mut transmit);
        socket.set_timeout(Some(crate::inbound_tls::HANDSHAKE_TIMEOUT));
        if socket.accept(TLS_ALPN_PORT).await.is_err() {
            Timer::after(Duration::from_secs(1)).await;
            continue;
        }
        serve(&mut socket).await;
        crate::network::release(&mut socket).await;
    }
}

/// One connection: the handshake with the validation configuration, then close_notify.
async fn serve(socket: &mut TcpSocket<'_>) {
    let Some(peer) = socket.remote_endpoint() else {
        socket.abort();
        return;
    };
    let Some(config) = current_config() else {
        defmt::warn!("acme: port 443 connection from {} with no challenge pending", peer);
        socket.abort();
        return;
    };
    let Some(mut permit) = TlsPermit::take() else {
        defmt::warn!("acme: port 443 connection from {} refused: every TLS session is in use", peer);
        socket.abort();
        return;
    };
    match crate::inbound_tls::handshake_with(socket, &mut permit, config).await {
        Ok(mut server) => {
            crate::event_info!("acme: tls-alpn-01 handshake completed (validation from {})", peer);
            crate::link::close_tls(socket, &mut *server).await;
        }
        Err(failure) => defmt::info!("acme: port 443 handshake from {} failed: {}", peer, failure.describe()),
    }
}
