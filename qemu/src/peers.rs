//! Small network peers for tests, used inside the isolated namespace: an HTTP/1.1 client and
//! a UDP client that send from a chosen source address (LAN or WAN).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::Result;

/// A TCP connection from `source` to `target`.
pub fn connect_from(source: Ipv4Addr, target: SocketAddrV4, timeout: Duration) -> Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from(SocketAddrV4::new(source, 0)).into())?;
    socket.connect_timeout(&SocketAddr::from(target).into(), timeout)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// An HTTP answer: status code, headers (raw) and body.
#[derive(Debug)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The header block as text.
    pub headers: String,
    /// The body as text.
    pub body: String,
}

/// Sends `GET path` with the given `Host:` header from `source` and reads the whole answer.
pub fn http_get(source: Ipv4Addr, target: SocketAddrV4, host: &str, path: &str) -> Result<HttpAnswer> {
    let mut stream = connect_from(source, target, Duration::from_secs(10))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8(answer)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("HTTP answer without header end")?;
    let status = head.split(' ').nth(1).ok_or("no status code")?.parse()?;
    Ok(HttpAnswer { status, headers: head.to_string(), body: body.to_string() })
}

/// Sends one datagram from `source` to `target`; returns the reply, or `None` on timeout.
pub fn udp_round_trip(source: Ipv4Addr, target: SocketAddrV4, payload: &[u8], timeout: Duration) -> Result<Option<(Vec<u8>, SocketAddr)>> {
    let socket = UdpSocket::bind(SocketAddrV4::new(source, 0))?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send_to(payload, target)?;
    let mut buffer = [0u8; 2048];
    match socket.recv_from(&mut buffer) {
        Ok((length, from)) => Ok(Some((buffer[..length].to_vec(), from))),
        Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Ok(None),
        Err(error) => Err(error.into()),
    }
}
