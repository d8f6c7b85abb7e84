//! The LAN web server on port 80: `/` (the status page), `/status.json` (the same facts for
//! scripts, schema in firmware/status/status.schema.json) and `/health` (firmware version,
//! board, uptime, link, stack and heap high-water, the queue length). Peers outside the LAN get 403, except a `GET` of the
//! pending ACME HTTP-01 token's path (its key authorization, see `acme`); a `Host:` that is
//! not the appliance gets 421 (the DNS-rebinding defence), anything but GET/HEAD gets 405.
//! Read-only: no request changes anything. Pages are rendered in 1 KB windows straight into
//! the socket, so no task holds a whole page.
//!
//! Owns: the HTTP tasks and their sockets. Calls: `acme`, `cpu_load`, `heap`, `lan`, `network`, `stack`,
//! `status_page`, `store`.

use core::fmt::Write as _;

use embassy_net::tcp::TcpSocket;
use embassy_net::{IpAddress, Stack};
use embassy_time::{Duration, Instant};
use embedded_io_async::Write as _;
use homemx_http::{parse_request_head, write_response, Method, ParseError, RequestHead, Response, Status};

use crate::lan::is_lan_peer;
use crate::{bsp, FIRMWARE_VERSION};

/// The HTTP port.
pub const HTTP_PORT: u16 = 80;
/// Host name the appliance answers to besides its address.
pub const DEVICE_NAME: &str = "homemx.lan";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP listeners: one connection at a time each, so a few run side by side.
pub const HTTP_TASK_COUNT: usize = crate::bsp::SIZING.http_sessions;

/// One HTTP connection at a time per task; the firmware runs [`HTTP_TASK_COUNT`].
#[embassy_executor::task(pool_size = HTTP_TASK_COUNT)]
pub async fn http_task(stack: Stack<'static>, task_number: u8) -> ! {
    let mut receive_buffer = [0u8; 1024];
    let mut transmit_buffer = [0u8; 1024];
    loop {
        let mut socket = TcpSocket::new(stack, &mut receive_buffer, &mut transmit_buffer);
        socket.set_timeout(Some(REQUEST_TIMEOUT));
        if socket.accept(HTTP_PORT).await.is_err() {
            continue;
        }
        let Some(peer) = socket.remote_endpoint() else {
            socket.abort();
            continue;
        };
        if !is_lan_peer(stack, peer.addr) {
            serve_wan(&mut socket, task_number, peer).await;
        } else {
            serve(&mut socket, stack, peer.addr).await;
        }
        // Send everything and our FIN, then release the connection (RST only if the peer
        // still holds it open) before the buffers are reused for the next listener.
        crate::network::release(&mut socket).await;
    }
}

/// A peer outside the LAN: only the pending ACME HTTP-01 token's key authorization
/// (`acme::wan_http_answer`, homemx-acme's `wan_http::route`), 403 for anything else.
async fn serve_wan(socket: &mut TcpSocket<'_>, task_number: u8, peer: embassy_net::IpEndpoint) {
    let mut head = [0u8; homemx_http::MAX_HEAD_LENGTH];
    let answer_text = match read_head(socket, &mut head).await {
        Some(Ok(request)) => crate::acme::wan_http_answer(request.method == Method::Get && !request.has_body, request.path),
        _ => None,
    };
    match answer_text {
        Some(key_authorization) => {
            defmt::info!("http[{}]: ACME HTTP-01 answer to {}", task_number, peer);
            let _ = answer(socket, Status::Ok, "text/plain", key_authorization.as_bytes(), false).await;
        }
        None => {
            defmt::warn!("http[{}]: refused non-LAN peer {}", task_number, peer);
            let _ = answer(socket, Status::Forbidden, "text/plain; charset=utf-8", b"403 forbidden: the status pages answer the LAN only\n", false).await;
        }
    }
}

/// Reads a request head into `head`; `None` when the peer closed first.
async fn read_head<'h>(socket: &mut TcpSocket<'_>, head: &'h mut [u8]) -> Option<Result<RequestHead<'h>, ParseError>> {
    let mut length = 0;
    loop {
        match socket.read(&mut head[length..]).await {
            Ok(0) | Err(_) => return None,
            Ok(count) => length += count,
        }
        match parse_request_head(&head[..length]) {
            Err(ParseError::Incomplete) => continue,
            _ => break,
        }
    }
    Some(parse_request_head(&head[..length]))
}

async fn serve(socket: &mut TcpSocket<'_>, stack: Stack<'static>, peer: IpAddress) {
    let mut head = [0u8; homemx_http::MAX_HEAD_LENGTH];
    let Some(request) = read_head(socket, &mut head).await else {
        return;
    };
    let text = "text/plain; charset=utf-8";
    let request: RequestHead<'_> = match request {
        Ok(request) => request,
        Err(ParseError::HeadTooLarge) => return answer_quietly(socket, Status::HeaderFieldsTooLarge, text, b"request head too large\n").await,
        Err(ParseError::UnsupportedVersion) => return answer_quietly(socket, Status::VersionNotSupported, text, b"HTTP/1.1 only\n").await,
        Err(_) => return answer_quietly(socket, Status::BadRequest, text, b"malformed request\n").await,
    };
    if !is_own_host(stack, request.host) {
        defmt::warn!("http: refused Host {} from {}", request.host, peer);
        return answer_quietly(socket, Status::MisdirectedRequest, text, b"unknown host name\n").await;
    }
    if request.method == Method::Other || request.has_body {
        return answer_quietly(socket, Status::MethodNotAllowed, text, b"read-only: GET and HEAD only\n").await;
    }
    let omit_body = request.method == Method::Head;
    match request.path {
        "/health" => {
            let body = health_json(stack, peer, crate::stack::high_water().await);
            let _ = answer(socket, Status::Ok, "application/json", body.as_bytes(), omit_body).await;
        }
        "/" | "/status.json" => {
            let snapshot = crate::status_page::snapshot().await;
            let html = request.path == "/";
            let (length, content_type, policy) = if html {
                (homemx_status::page_length(&snapshot), "text/html; charset=utf-8", homemx_status::CONTENT_SECURITY_POLICY)
            } else {
                (homemx_status::json_length(&snapshot), "application/json", homemx_http::response::DEFAULT_CONTENT_SECURITY_POLICY)
            };
            let head = homemx_http::response::ResponseHead { status: Status::Ok, content_type, content_length: length, content_security_policy: policy };
            let mut window = [0u8; 1024];
            let Some(head_length) = homemx_http::response::write_head(&head, &mut window) else {
                return;
            };
            if socket.write_all(&window[..head_length]).await.is_err() || omit_body {
                return;
            }
            let mut offset = 0;
            while offset < length {
                let count = if html {
                    homemx_status::render_page_window(&snapshot, offset, &mut window)
                } else {
                    homemx_status::render_json_window(&snapshot, offset, &mut window)
                };
                if count == 0 || socket.write_all(&window[..count]).await.is_err() {
                    return;
                }
                offset += count;
            }
        }
        _ => answer_quietly(socket, Status::NotFound, text, b"not found\n").await,
    }
}

fn is_own_host(stack: Stack<'static>, host: &str) -> bool {
    if host.eq_ignore_ascii_case(DEVICE_NAME) {
        return true;
    }
    let Some(config) = stack.config_v4() else {
        return false;
    };
    let mut own = heapless::String::<16>::new();
    let _ = write!(own, "{}", config.address.address());
    own.as_str() == host
}

/// The `/health` document.
fn health_json(stack: Stack<'static>, peer: IpAddress, stack_high_water: Option<usize>) -> heapless::String<704> {
    let mut json = heapless::String::new();
    let link = if stack.is_link_up() { "up" } else { "down" };
    let _ = write!(
        json,
        "{{\"firmware\":\"homemx\",\"version\":\"{}\",\"board\":\"{}\",\"uptime_seconds\":{},\"link\":\"{}\"",
        FIRMWARE_VERSION,
        bsp::BOARD_NAME,
        Instant::now().as_secs(),
        link
    );
    if let Some(config) = stack.config_v4() {
        let _ = write!(json, ",\"address\":\"{}\"", config.address);
        if let Some(gateway) = config.gateway {
            let _ = write!(json, ",\"gateway\":\"{}\"", gateway);
        }
    }
    let _ = write!(json, ",\"busy_core_clock_counts\":{}", crate::cpu_load::busy_core_clock_counts());
    let _ = write!(json, ",\"longest_poll_microseconds\":{}", crate::cpu_load::longest_poll_microseconds());
    let _ = write!(json, ",\"heap_used_bytes\":{}", crate::heap::used());
    let _ = write!(json, ",\"heap_high_water_bytes\":{}", crate::heap::high_water());
    // As the store last published it: /health never waits for the store.
    let _ = write!(json, ",\"queued_messages\":{}", crate::store::queued_messages());
    if let Some(stack) = stack_high_water {
        let _ = write!(json, ",\"stack_high_water_bytes\":{}", stack);
    }
    let acme = crate::acme::status();
    let last = match acme.last {
        None => "none",
        Some((_, true)) => "ok",
        Some((_, false)) => "failed",
    };
    let _ = write!(json, ",\"acme\":{{\"last\":\"{}\",\"failures\":{}", last, acme.failures);
    if let Some(next) = acme.next_attempt {
        let _ = write!(json, ",\"next_attempt\":{}", next);
    }
    if let Some(expiry) = acme.expiry {
        let _ = write!(json, ",\"expiry\":{}", expiry);
    }
    let _ = write!(json, "}}");
    let _ = write!(json, ",\"client\":\"{}\"}}", peer);
    json
}

async fn answer_quietly(socket: &mut TcpSocket<'_>, status: Status, content_type: &str, body: &[u8]) {
    let _ = answer(socket, status, content_type, body, false).await;
}

async fn answer(
    socket: &mut TcpSocket<'_>,
    status: Status,
    content_type: &str,
    body: &[u8],
    omit_body: bool,
) -> Result<(), embassy_net::tcp::Error> {
    let mut response = [0u8; 1024];
    let Some(length) = write_response(&Response { status, content_type, body, omit_body }, &mut response) else {
        return Ok(());
    };
    socket.write_all(&response[..length]).await
}
