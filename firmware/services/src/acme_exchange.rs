//! One ACME request (RFC 8555 section 6.1: HTTPS, `Connection: close`): the CA's name through
//! `resolver`, TCP and TLS through `link` with the `TlsService::Acme` trust anchor, the bytes
//! by homemx-acme's `exchange`, the answer handed to the caller's reader. Used by `acme` (the
//! issuance) and `acme_ari` (the renewal information).
//!
//! Owns: nothing (the caller's buffers). Calls: `event_log`, `instrument`, `link`, `random`,
//! `resolver`, `stack`, `store`, `wall_clock`.

use alloc::vec::Vec;
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpEndpoint, Ipv4Address, Stack};
use embassy_time::Duration;
use homemx_acme::client::{Request, Response};
use homemx_http::client::Progress;
use homemx_wire::message::TlsService;

use crate::instrument::Operation;
use crate::link::{ConnectionBuffers, Link, TlsStart};
use crate::random::DerivedRandom;
use crate::stack::own_frame;

/// Sends `request` over a new TLS connection to its URL and hands the answer and the time to
/// `receive` (the client, or `acme_ari`'s reader). `receive` is a trait object so that one copy
/// of this function serves all its callers instead of one inlined into each: inlined, its
/// temporaries stayed in their frames (`acme::run_if_due`'s, `acme::run_requests`') through
/// every other step, on the deepest stack path measured in QEMU (an ACME issuance).
pub async fn exchange(
    stack: Stack<'static>,
    random: &mut DerivedRandom,
    buffers: &mut ConnectionBuffers,
    request: &Request,
    body: &mut [u8],
    header_store: &mut [u8],
    receive: &mut dyn FnMut(&Response<'_>, u64),
) -> Result<(), &'static str> {
    let host = request.url.host();
    let address = crate::resolver::resolve_address(stack, host).await.map_err(|_| "the name did not resolve")?;
    let trust_source = crate::store::provider_login(TlsService::Acme, &mut buffers.anchor, None).await.0.ok_or("no trust anchor for the ACME server")?;
    let bytes = request_bytes(request)?;
    let mut socket = TcpSocket::new(stack, &mut buffers.socket_receive, &mut buffers.socket_transmit);
    socket.set_timeout(Some(Duration::from_secs(30)));
    socket.connect(IpEndpoint::new(Ipv4Address::from(address).into(), request.url.port())).await.map_err(|_| "connection failed")?;
    let mut link = Link::Plain(socket);
    let start = TlsStart {
        read: &mut buffers.read,
        write: &mut buffers.write,
        server_name: host,
        trust: trust_source.trust(&buffers.anchor),
        random,
        // Counted with the DynDNS handshakes: the same client handshake to a WAN HTTPS server.
        operation: Operation::TlsHandshakeDynDns,
        minimum: crate::link::minimum_tls(Default::default()),
    };
    if let Err(error) = link.start_tls(start).await {
        crate::event_warning!("acme: TLS to {} failed: {}", host, error.describe());
        return Err("the TLS handshake failed");
    }
    let result = own_frame(ask(&mut link, bytes, body, header_store, receive)).await;
    link.close().await;
    result
}

/// The request's bytes, made in a frame of its own: inlined, the HTTP writer's temporaries
/// stayed in [`exchange`]'s poll frame under the TLS handshake.
#[inline(never)]
fn request_bytes(request: &Request) -> Result<Vec<u8>, &'static str> {
    homemx_acme::exchange::request_bytes(request).map_err(|_| "the request did not fit")
}

/// Sends `bytes` over the verified `link` and hands the answer to `receive`. Polled in a frame
/// of its own ([`own_frame`]): inlined, the parser's making and the read buffer took room in
/// [`exchange`]'s poll frame under the TLS handshake (the deepest stack path measured).
async fn ask(
    link: &mut Link<'_, '_>,
    bytes: Vec<u8>,
    body: &mut [u8],
    header_store: &mut [u8],
    receive: &mut dyn FnMut(&Response<'_>, u64),
) -> Result<(), &'static str> {
    if link.write_all(&bytes).await.is_err() {
        return Err("no complete answer");
    }
    drop(bytes);
    let mut parser = homemx_acme::exchange::response_parser(body, header_store);
    let mut input = [0u8; 512];
    loop {
        let complete = match link.read(&mut input).await {
            Ok(0) | Err(_) => parser.connection_closed().is_ok(),
            Ok(count) => match parser.feed(&input[..count]) {
                Ok(Progress::Complete) => true,
                Ok(Progress::NeedMore) => continue,
                Err(_) => return Err("the answer was malformed or too large"),
            },
        };
        if complete {
            if let Some(response) = homemx_acme::exchange::response(&parser) {
                let now = crate::wall_clock::unix_seconds().unwrap_or(0);
                receive(&response, now);
                return Ok(());
            }
        }
        return Err("no complete answer");
    }
}
