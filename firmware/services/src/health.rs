//! The LAN web server on port 80: `/` (the status page), `/status.json` (the same facts for
//! scripts, schema in firmware/status/status.schema.json) and `/health` (firmware version,
//! board, uptime, link, stack and heap high-water, the queue length). Peers outside the LAN get 403, except a `GET` of the
//! pending ACME HTTP-01 token's path (its key authorization, see `acme`); a `Host:` that is
//! not the appliance gets 421 (the DNS-rebinding defence), anything but GET/HEAD gets 405.
//! Read-only: no request changes anything. Pages are rendered window by window straight into
//! the socket's transmit buffer, so no task holds a whole page.
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
/// The socket's receive buffer (the TCP window): the request head is copied out of it as it
/// arrives (into a head buffer of [`homemx_http::MAX_HEAD_LENGTH`]), so it holds only what is in
/// flight. 512 B take a typical head (curl's ~100 B, a browser's ~500 B) in one window; a
/// longer one, up to the 2 KB limit, in a few. (1 KB before: 512 B less per HTTP task.)
const RECEIVE_BUFFER: usize = 512;
/// The socket's transmit buffer: a response head must fit it whole (see [`send_status`]), and
/// the status page is rendered into it window by window, so its size sets the page's pace.
const TRANSMIT_BUFFER: usize = 1024;

/// HTTP listeners: one connection at a time each, so a few run side by side.
pub const HTTP_TASK_COUNT: usize = crate::bsp::SIZING.http_sessions;

/// One HTTP connection at a time per task; the firmware runs [`HTTP_TASK_COUNT`].
#[embassy_executor::task(pool_size = HTTP_TASK_COUNT)]
pub async fn http_task(stack: Stack<'static>, task_number: u8) -> ! {
    let mut receive_buffer = [0u8; RECEIVE_BUFFER];
    let mut transmit_buffer = [0u8; TRANSMIT_BUFFER];
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
    // The request's head, then (read and done with) the answer's.
    let mut buffer = [0u8; homemx_http::MAX_HEAD_LENGTH];
    let answer_text = match read_head(socket, &mut buffer).await {
        Some(Ok(request)) => crate::acme::wan_http_answer(request.method == Method::Get && !request.has_body, request.path),
        _ => None,
    };
    match answer_text {
        Some(key_authorization) => {
            defmt::info!("http[{}]: ACME HTTP-01 answer to {}", task_number, peer);
            let _ = answer(socket, &mut buffer, Status::Ok, "text/plain", key_authorization.as_bytes(), false).await;
        }
        None => {
            defmt::warn!("http[{}]: refused non-LAN peer {}", task_number, peer);
            let body = b"403 forbidden: the status pages answer the LAN only\n";
            let _ = answer(socket, &mut buffer, Status::Forbidden, "text/plain; charset=utf-8", body, false).await;
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

/// What a LAN request asks for once its head was read and checked (by [`answer_request`], which
/// answered every other request itself).
enum Page {
    /// `/health`.
    Health,
    /// `/` (`html`) or `/status.json`.
    Status { html: bool },
}

/// Serves one LAN request. The request head's 2 KB exist only while the head is read and
/// checked ([`answer_request`]); the page is assembled and sent after that, each step in a
/// function of its own: an async fn's locals that live across more than one `.await` sit apart
/// from everything else in its future, so the task's future holds the head, or one page's
/// room, not all of them (about 4 KB less per HTTP task).
async fn serve(socket: &mut TcpSocket<'_>, stack: Stack<'static>, peer: IpAddress) {
    match answer_request(socket, stack, peer).await {
        Some((Page::Health, omit_body)) => send_health(socket, stack, peer, omit_body).await,
        Some((Page::Status { html }, omit_body)) => send_status_page(socket, html, omit_body).await,
        None => {}
    }
}

/// Assembles the status page's facts and sends them (`html`: the page; else `/status.json`).
async fn send_status_page(socket: &mut TcpSocket<'_>, html: bool, omit_body: bool) {
    let mut snapshot = homemx_status::StatusSnapshot::default();
    crate::status_page::snapshot(&mut snapshot).await;
    send_status(socket, &snapshot, html, omit_body).await;
}

/// Sends the `/health` document.
async fn send_health(socket: &mut TcpSocket<'_>, stack: Stack<'static>, peer: IpAddress, omit_body: bool) {
    let body = health_json(stack, peer, crate::stack::high_water().await);
    let mut response = [0u8; 1024];
    let _ = answer(socket, &mut response, Status::Ok, "application/json", body.as_bytes(), omit_body).await;
}

/// Sends the status page (`html`) or `/status.json` of `snapshot`, rendered straight into the
/// socket's transmit buffer (its largest free run each time): no window of our own.
async fn send_status(socket: &mut TcpSocket<'_>, snapshot: &homemx_status::StatusSnapshot, html: bool, omit_body: bool) {
    let (length, content_type, policy) = if html {
        (homemx_status::page_length(snapshot), "text/html; charset=utf-8", homemx_status::CONTENT_SECURITY_POLICY)
    } else {
        (homemx_status::json_length(snapshot), "application/json", homemx_http::response::DEFAULT_CONTENT_SECURITY_POLICY)
    };
    let head = homemx_http::response::ResponseHead { status: Status::Ok, content_type, content_length: length, content_security_policy: policy };
    // The connection's socket is new: its whole transmit buffer (1 KB) is free for the head.
    let head_written = socket.write_with(|free| match homemx_http::response::write_head(&head, free) {
        Some(head_length) => (head_length, true),
        None => (0, false),
    });
    if !matches!(head_written.await, Ok(true)) || omit_body {
        return;
    }
    let mut offset = 0;
    while offset < length {
        let rendered = socket.write_with(|free| {
            let count = if html {
                homemx_status::render_page_window(snapshot, offset, free)
            } else {
                homemx_status::render_json_window(snapshot, offset, free)
            };
            (count, count)
        });
        match rendered.await {
            Ok(count) if count > 0 => offset += count,
            _ => return,
        }
    }
}

/// Reads and checks a LAN request's head and answers it if it is anything but a page (an
/// error, an unknown path; the head's buffer then holds the answer). Returns the page asked
/// for and whether its body is omitted (`HEAD`); `None` when the request was answered or the
/// peer closed.
async fn answer_request(socket: &mut TcpSocket<'_>, stack: Stack<'static>, peer: IpAddress) -> Option<(Page, bool)> {
    let mut buffer = [0u8; homemx_http::MAX_HEAD_LENGTH];
    let request = read_head(socket, &mut buffer).await?;
    let text = "text/plain; charset=utf-8";
    let refusal: (Status, &[u8]) = match request {
        Ok(request) if !is_own_host(stack, request.host) => {
            defmt::warn!("http: refused Host {} from {}", request.host, peer);
            (Status::MisdirectedRequest, b"unknown host name\n")
        }
        Ok(request) if request.method == Method::Other || request.has_body => (Status::MethodNotAllowed, b"read-only: GET and HEAD only\n"),
        Ok(request) => {
            let omit_body = request.method == Method::Head;
            match request.path {
                "/health" => return Some((Page::Health, omit_body)),
                "/" => return Some((Page::Status { html: true }, omit_body)),
                "/status.json" => return Some((Page::Status { html: false }, omit_body)),
                _ => (Status::NotFound, b"not found\n"),
            }
        }
        Err(ParseError::HeadTooLarge) => (Status::HeaderFieldsTooLarge, b"request head too large\n"),
        Err(ParseError::UnsupportedVersion) => (Status::VersionNotSupported, b"HTTP/1.1 only\n"),
        Err(_) => (Status::BadRequest, b"malformed request\n"),
    };
    let (status, body) = refusal;
    let _ = answer(socket, &mut buffer, status, text, body, false).await;
    None
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

/// Writes the response into `buffer` (free for it: `body` is elsewhere) and sends it.
async fn answer(
    socket: &mut TcpSocket<'_>,
    buffer: &mut [u8],
    status: Status,
    content_type: &str,
    body: &[u8],
    omit_body: bool,
) -> Result<(), embassy_net::tcp::Error> {
    let Some(length) = write_response(&Response { status, content_type, body, omit_body }, buffer) else {
        return Ok(());
    };
    socket.write_all(&buffer[..length]).await
}
