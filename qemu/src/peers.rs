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

/// The messages a mail peer stored in `directory` (`NNNN.eml` with a `NNNN.json` sidecar:
/// envelope and connection facts), oldest first.
pub fn stored_messages(directory: &std::path::Path) -> Vec<(Vec<u8>, serde_json::Value)> {
    stored_message_files(directory)
        .into_iter()
        .filter_map(|path| {
            let body = std::fs::read(&path).ok()?;
            let sidecar = std::fs::read(path.with_extension("json")).ok()?;
            Some((body, serde_json::from_slice(&sidecar).ok()?))
        })
        .collect()
}

/// The message files (`NNNN.eml`) a mail peer stored in `directory`, oldest first.
fn stored_message_files(directory: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut names: Vec<_> = std::fs::read_dir(directory)
        .map(|entries| entries.filter_map(|entry| entry.ok()).map(|entry| entry.path()).collect())
        .unwrap_or_default();
    names.retain(|path| path.extension().is_some_and(|extension| extension == "eml"));
    names.sort();
    names
}

/// Waits until `peer` (named in the error) has stored at least `count` messages in `directory`.
pub fn wait_for_stored_messages(
    directory: &std::path::Path,
    peer: &str,
    count: usize,
    timeout: Duration,
) -> Result<Vec<(Vec<u8>, serde_json::Value)>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let messages = stored_messages(directory);
        if messages.len() >= count {
            return Ok(messages);
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("{peer} has {} messages, not {count}", messages.len()).into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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

/// The LAN mailbox host (`qemu/peers/mailbox_host.py`, aiosmtpd) inside the namespace: stores
/// every message it accepts; stopped by PID on drop.
pub struct MailboxHost {
    child: Option<std::process::Child>,
    directory: std::path::PathBuf,
}

impl MailboxHost {
    /// Starts it on `listen` (`address:port`) speaking `protocol` (`lmtp` or `smtp`).
    pub fn start(namespace: &str, listen: &str, protocol: &str, directory: &std::path::Path) -> Result<Self> {
        Self::start_with(namespace, listen, protocol, directory, &[])
    }

    /// Starts one that is open to SMTP smuggling: it takes a bare LF or CR as a line end (a
    /// `.` line after one ends the DATA) and writes the bare line ends it saw on the
    /// connection so far into each sidecar (`bare_line_ends`).
    pub fn start_lenient(namespace: &str, listen: &str, protocol: &str, directory: &std::path::Path) -> Result<Self> {
        Self::start_with(namespace, listen, protocol, directory, &["--lenient-line-ends"])
    }

    fn start_with(namespace: &str, listen: &str, protocol: &str, directory: &std::path::Path, options: &[&str]) -> Result<Self> {
        use std::io::BufRead;
        let script = crate::repository_root().join("qemu/peers/mailbox_host.py");
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", namespace, "python3"])
            .arg(script)
            .args(["--listen", listen, "--protocol", protocol])
            .args(options)
            .arg("--directory")
            .arg(directory)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(directory.with_extension("stderr"))?)
            .spawn()
            .map_err(|error| format!("cannot start the mailbox host: {error}"))?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the mailbox host did not start (aiosmtpd installed by host-tools/setup.sh?): {line:?}").into());
        }
        Ok(MailboxHost { child: Some(child), directory: directory.to_path_buf() })
    }

    /// Every stored message (bytes as received) with its envelope, oldest first.
    pub fn messages(&self) -> Vec<(Vec<u8>, serde_json::Value)> {
        stored_messages(&self.directory)
    }

    /// Waits until at least `count` messages are stored.
    pub fn wait_for_messages(&self, count: usize, timeout: Duration) -> Result<Vec<(Vec<u8>, serde_json::Value)>> {
        wait_for_stored_messages(&self.directory, "the mailbox host", count, timeout)
    }

    /// How many messages it has stored (files counted, none read: cheap for thousands).
    pub fn message_count(&self) -> usize {
        stored_message_files(&self.directory).len()
    }

    /// Waits until at least `count` messages are stored, counting files only; returns the count.
    pub fn wait_for_message_count(&self, count: usize, timeout: Duration) -> Result<usize> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let stored = self.message_count();
            if stored >= count {
                return Ok(stored);
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("the mailbox host has {stored} messages, not {count}, after {timeout:?}").into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops it (SIGTERM to the PID it was started with).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling the process this harness started, by its PID.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

impl Drop for MailboxHost {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends a message with Python's smtplib (`qemu/peers/smtp_client.py`) from `source` inside
/// the namespace; returns the replies (connect, mail, each rcpt, data) as JSON.
pub fn send_mail(
    namespace: &str,
    source: Ipv4Addr,
    server: impl std::fmt::Display,
    sender: &str,
    recipients: &[&str],
    message: &std::path::Path,
    raw: bool,
) -> Result<serde_json::Value> {
    run_smtp_client(namespace, source, server, sender, recipients, message, if raw { &["--raw"] } else { &[] })
}

/// [`send_mail`] after STARTTLS (the device's certificate is not checked); the reply's
/// `starttls` holds the `220`, the TLS version and the cipher.
pub fn send_mail_over_starttls(
    namespace: &str,
    source: Ipv4Addr,
    server: impl std::fmt::Display,
    sender: &str,
    recipients: &[&str],
    message: &std::path::Path,
) -> Result<serde_json::Value> {
    run_smtp_client(namespace, source, server, sender, recipients, message, &["--starttls"])
}

/// [`send_mail_over_starttls`], then AUTH as `user` with `password` (the reply's `auth`).
pub fn submit_authenticated(
    namespace: &str,
    source: Ipv4Addr,
    server: impl std::fmt::Display,
    (user, password): (&str, &str),
    recipients: &[&str],
    message: &std::path::Path,
) -> Result<serde_json::Value> {
    let login = format!("{user}:{password}");
    run_smtp_client(namespace, source, server, user, recipients, message, &["--starttls", "--auth", &login])
}

fn run_smtp_client(
    namespace: &str,
    source: Ipv4Addr,
    server: impl std::fmt::Display,
    sender: &str,
    recipients: &[&str],
    message: &std::path::Path,
    flags: &[&str],
) -> Result<serde_json::Value> {
    let script = crate::repository_root().join("qemu/peers/smtp_client.py");
    let mut command = std::process::Command::new("ip");
    command.args(["netns", "exec", namespace, "python3"]).arg(script);
    command.args(["--source", &source.to_string(), "--server", &server.to_string(), "--sender", sender]);
    for recipient in recipients {
        command.args(["--recipient", recipient]);
    }
    command.arg("--message").arg(message);
    command.args(flags);
    let output = command.output()?;
    if !output.status.success() {
        return Err(format!("smtp client failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// Checks that a [`send_mail`] reply accepted the message (250 at the end of DATA).
pub fn expect_250(reply: &serde_json::Value) -> Result<()> {
    if reply["data"][0] == 250 {
        Ok(())
    } else {
        Err(format!("the appliance did not accept the message: {reply}").into())
    }
}

/// Splits the leading `Received:` header (with its continuation lines) off a stored message:
/// the header's text and the rest; `None` when the message does not start with one.
pub fn split_received(body: &[u8]) -> Option<(String, &[u8])> {
    if !body.starts_with(b"Received: ") {
        return None;
    }
    let mut end = 0;
    loop {
        end += body[end..].windows(2).position(|pair| pair == b"\r\n")? + 2;
        if !matches!(body.get(end), Some(b' ') | Some(b'\t')) {
            return Some((String::from_utf8_lossy(&body[..end]).to_string(), &body[end..]));
        }
    }
}

/// `/health` fetched from the LAN client, parsed, and how long the answer took.
pub fn health(network: &crate::network::IsolatedNetwork) -> Result<(serde_json::Value, Duration)> {
    let target = SocketAddrV4::new(crate::network::APPLIANCE, 80);
    let started = std::time::Instant::now();
    let answer = network.run_inside(move || http_get(crate::network::LAN_CLIENT, target, "192.168.77.2", "/health"))??;
    let elapsed = started.elapsed();
    if answer.status != 200 {
        return Err(format!("/health answered {}", answer.status).into());
    }
    Ok((serde_json::from_str(&answer.body)?, elapsed))
}

/// The firmware's target for its longest task poll: one executor runs every task, so a longer
/// poll stalls the network, the console and the mail for that long. Reported, not asserted: the
/// emulator's clock follows the host's, so a loaded host (CI with three QEMUs and builds beside
/// them) stretches a 35 ms poll past 100 ms.
pub const LONGEST_POLL_TARGET: Duration = Duration::from_millis(50);

/// Prints the TLS heap's high-water mark since boot (`/health`'s `heap_high_water_bytes`), the
/// figure that sizes the board's heap, and what is in use now.
pub fn report_heap(network: &crate::network::IsolatedNetwork) {
    let (health, _) = health(network).expect("/health answers");
    let high_water = health["heap_high_water_bytes"].as_u64().expect("/health reports heap_high_water_bytes");
    let used = health["heap_used_bytes"].as_u64().expect("/health reports heap_used_bytes");
    eprintln!("heap high-water since boot: {high_water} B; in use now: {used} B");
}

/// What the tests assert instead: no poll may come near a second. A task that computes without
/// yielding (an unlock's key derivation in one poll: several seconds in QEMU) or spins is caught;
/// host scheduling noise is not.
pub const LONGEST_POLL_ALLOWED: Duration = Duration::from_millis(500);

/// Reports the firmware's longest task poll since boot (`/health`'s
/// `longest_poll_microseconds`) against [`LONGEST_POLL_TARGET`] and asserts it stayed under
/// [`LONGEST_POLL_ALLOWED`]; the e2e tests of the mail paths call it at their end.
pub fn assert_short_polls(network: &crate::network::IsolatedNetwork) {
    let (health, _) = health(network).expect("/health answers");
    let longest = health["longest_poll_microseconds"].as_u64().expect("/health reports longest_poll_microseconds");
    let verdict = if Duration::from_micros(longest) < LONGEST_POLL_TARGET { "within" } else { "OVER" };
    eprintln!("longest task poll since boot: {longest} µs ({verdict} the {} ms target; QEMU time)", LONGEST_POLL_TARGET.as_millis());
    assert!(
        Duration::from_micros(longest) < LONGEST_POLL_ALLOWED,
        "a task poll took {longest} µs (at most {} ms allowed): something kept the executor from every other task",
        LONGEST_POLL_ALLOWED.as_millis()
    );
}
