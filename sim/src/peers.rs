//! The scripted peers on the simulated network's other side: WAN senders that hand the MX
//! messages on port 25 and LAN clients that submit outbound mail on port 587, and the LAN
//! mailbox host that takes the deliveries over LMTP. They are written from the RFCs,
//! independently of the device's own SMTP code, and record what happened for the invariants:
//! which messages got `250`, what arrived (here or at the smarthost, `crate::smarthost`), byte
//! for byte.
//!
//! Owns: the peers' records and the reading of command and reply lines. Calls: nothing.

use std::cell::RefCell;
use std::rc::Rc;

use embassy_net::tcp::TcpSocket;
use embassy_net::{IpEndpoint, Stack};
use embassy_time::{Duration, Timer};
use embedded_io_async::{Read, Write};
use rand::Rng;
use rand_chacha::ChaCha20Rng;

/// Where a message must end up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Destination {
    /// The LAN mailbox host (a recipient of the device's domain, sent to the MX on port 25).
    Mailbox,
    /// The provider's smarthost (an outside recipient, submitted by a LAN client on port 587).
    Smarthost,
}

impl Destination {
    const fn slot(self) -> usize {
        match self {
            Destination::Mailbox => 0,
            Destination::Smarthost => 1,
        }
    }
}

/// A message a sender offers: its recipient and its content (header and body, CRLF lines).
#[derive(Clone, Debug)]
pub struct Offered {
    /// The envelope recipient.
    pub recipient: String,
    /// The message as the sender wrote it (before dot-stuffing).
    pub content: Vec<u8>,
    /// Where it must be delivered (and so on which port it is offered).
    pub destination: Destination,
}

/// What the peers saw (kept across the device's boots: written to the resume file after a
/// power cut).
#[derive(Clone, Default, Debug, serde::Serialize, serde::Deserialize)]
pub struct Records {
    /// Messages the MX answered `250` to after their data, by index into the offered list.
    pub accepted: Vec<usize>,
    /// Messages the MX refused or lost the connection on, with the reason.
    pub not_accepted: Vec<(usize, String)>,
    /// The first message no sender has begun to offer yet: a boot after a power cut offers the
    /// rest from here (the one being offered when the power went is not offered again, as its
    /// sender cannot know whether the device kept it).
    pub next_to_offer: usize,
    /// Every message the mailbox host or the smarthost answered `250` for (dot-stuffing undone).
    pub delivered: Vec<Delivery>,
    /// Deliveries the mailbox host refused on purpose (`451`), to be tried again by the device.
    pub refused_deliveries: u32,
    /// Connections the mailbox host dropped on purpose in the middle of a delivery.
    pub dropped_deliveries: u32,
    /// Messages the smarthost refused on purpose (`451`, or `421` at the greeting).
    pub smarthost_refusals: u32,
    /// Connections the smarthost dropped on purpose in the middle of the data.
    pub smarthost_drops: u32,
    /// Sessions the smarthost served over TLS (implicit, or after STARTTLS).
    pub smarthost_tls_sessions: u32,
    /// Logins the smarthost accepted.
    pub smarthost_logins: u32,
    /// Connections on which an impostor's certificate was presented (which the device must refuse).
    pub smarthost_impostors: u32,
    /// The device's boot now running (1 is the first).
    pub boot: u32,
    /// Connections the mailbox host and the smarthost accepted (across boots): numbers the
    /// deliveries.
    pub connections: u32,
    /// Per power cut: the boot it ended and the delivery connections it may have cut short.
    pub cuts: Vec<PowerCut>,
    /// Messages found in clear on the flash at a power cut (checked when the boot ends).
    pub plaintext: Vec<String>,
    /// What was sent in clear where TLS is required: commands the smarthost got before TLS,
    /// and what the wire tap found (`crate::wiretap`), one sentence each.
    pub cleartext: Vec<String>,
    /// Outbound messages the wire tap read on their submission (its control, across boots).
    pub read_on_submission: Vec<usize>,
    /// Backup-MX messages the wire tap read on their delivery to the mailbox host (the LAN
    /// carries no TLS: the control of the POP3 side, across boots).
    pub backup_read_on_lan: Vec<usize>,
    /// The spool's free bytes once the device was provisioned (its status, first boot).
    pub free_after_provisioning: Option<u32>,
}

/// A power cut as the peers saw it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PowerCut {
    /// The boot it ended.
    pub boot: u32,
    /// Per destination, its last connection accepted before the cut if that connection was
    /// still open or ended less than [`RECORDING_GRACE_MS`] before.
    pub interrupted: Vec<u32>,
}

/// How soon after a delivery session ends the device has recorded its outcomes, at most: a
/// power cut within it may repeat that session's deliveries.
pub const RECORDING_GRACE_MS: u64 = 10_000;

/// One message the mailbox host took.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    /// The envelope recipient.
    pub recipient: String,
    /// The content as received, dot-stuffing undone.
    pub content: Vec<u8>,
    /// Whether the device sent another command after the `250`, so it certainly read it. A
    /// delivery whose connection ended first may be repeated: the device cannot know it
    /// arrived (the duplicate of RFC 1047, which RFC 5321 section 6.1 accepts over a loss).
    pub confirmed: bool,
    /// The boot of the device that delivered it.
    pub boot: u32,
    /// The connection it came on (numbered across the mailbox host and the smarthost).
    pub connection: u32,
    /// Who took it.
    pub destination: Destination,
}

/// Shared between the peers and the simulator (one thread: `Rc<RefCell>`).
pub type SharedRecords = Rc<RefCell<Records>>;

/// A generated message: a unique `Message-ID`, some header lines and `length` bytes of body
/// in lines of varied length, some of which start with a dot (stuffed by the sender).
pub fn generate_message(random: &mut ChaCha20Rng, seed: u64, index: usize, recipient: &str, length: usize) -> Vec<u8> {
    let mut content = format!(
        "From: sender{index}@example.net\r\nTo: {recipient}\r\nSubject: simulated {seed}/{index}\r\nMessage-ID: <{seed}.{index}@sim.example.net>\r\n\r\n"
    )
    .into_bytes();
    while content.len() < length {
        let line_length = random.gen_range(0..120);
        if random.gen_ratio(1, 10) {
            content.push(b'.');
        }
        for _ in 0..line_length {
            content.push(random.gen_range(b' '..=b'~'));
        }
        content.extend_from_slice(b"\r\n");
    }
    content
}

/// Reads one reply (all its lines) and returns its code, or `None` when the connection ended.
async fn reply<S: Read>(socket: &mut S, pending: &mut Vec<u8>) -> Option<u16> {
    loop {
        if let Some(end) = pending.windows(2).position(|pair| pair == b"\r\n") {
            let line: Vec<u8> = pending.drain(..end + 2).collect();
            if line.len() >= 4 && line[3] == b'-' {
                continue;
            }
            return std::str::from_utf8(line.get(..3)?).ok()?.parse().ok();
        }
        let mut buffer = [0u8; 512];
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(count) => pending.extend_from_slice(&buffer[..count]),
        }
    }
}

/// Reads one command line (without CRLF), or `None` when the connection ended.
pub async fn line<S: Read>(socket: &mut S, pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = pending.windows(2).position(|pair| pair == b"\r\n") {
            let mut line: Vec<u8> = pending.drain(..end + 2).collect();
            line.truncate(end);
            return Some(line);
        }
        let mut buffer = [0u8; 1024];
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(count) => pending.extend_from_slice(&buffer[..count]),
        }
    }
}

/// Reads a message's data up to the line with the one dot, dot-stuffing undone; `None` when
/// the connection ended first.
pub async fn read_data<S: Read>(socket: &mut S, pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut content = Vec::new();
    loop {
        let data_line = line(socket, pending).await?;
        if data_line == b"." {
            return Some(content);
        }
        let unstuffed = data_line.strip_prefix(b".").unwrap_or(&data_line);
        content.extend_from_slice(unstuffed);
        content.extend_from_slice(b"\r\n");
    }
}

/// The message with every line that starts with a dot given a second one (RFC 5321 4.5.2).
pub fn dot_stuffed(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 16);
    let mut line_start = true;
    for &byte in content {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        line_start = byte == b'\n';
    }
    out
}

/// Where a sender that gives up hangs up, and how.
#[derive(Clone, Copy, Debug)]
pub struct HangUp {
    /// After this many of the session's steps (greeting, EHLO, MAIL, RCPT, DATA, half the data).
    pub after_steps: u8,
    /// With a reset (abort) rather than a FIN (close).
    pub reset: bool,
}

/// Sends one message to `device` (the MX's port 25 or the submission port 587): `Ok(())` when
/// it answered `250` to the data, else what went wrong. A sender with a `hang_up` gives up
/// part-way.
async fn send_one(stack: Stack<'static>, device: IpEndpoint, message: &Offered, hang_up: Option<HangUp>) -> Result<(), String> {
    let mut receive_buffer = vec![0u8; 4096];
    let mut transmit_buffer = vec![0u8; 4096];
    let mut socket = TcpSocket::new(stack, &mut receive_buffer, &mut transmit_buffer);
    socket.set_timeout(Some(Duration::from_secs(120)));
    socket.connect(device).await.map_err(|error| format!("connect: {error:?}"))?;
    let mut pending = Vec::new();
    let mut step = async |socket: &mut TcpSocket<'_>, command: Option<&[u8]>, expected: u16| -> Result<(), String> {
        if let Some(command) = command {
            socket.write_all(command).await.map_err(|error| format!("write: {error:?}"))?;
        }
        match reply(socket, &mut pending).await {
            Some(code) if code == expected => Ok(()),
            Some(code) => Err(format!("{code} to {:?}", command.map(String::from_utf8_lossy))),
            None => Err(format!("connection ended waiting for {expected}")),
        }
    };
    let mut data = dot_stuffed(&message.content);
    data.extend_from_slice(b".\r\n");
    let recipient = format!("RCPT TO:<{}>\r\n", message.recipient);
    let commands: [(Option<&[u8]>, u16); 6] = [
        (None, 220),
        (Some(b"EHLO sender.example.net\r\n"), 250),
        (Some(b"MAIL FROM:<sender@example.net>\r\n"), 250),
        (Some(recipient.as_bytes()), 250),
        (Some(b"DATA\r\n"), 354),
        (Some(&data), 250),
    ];
    for (index, (command, expected)) in commands.into_iter().enumerate() {
        if let Some(hang_up) = hang_up.filter(|hang_up| usize::from(hang_up.after_steps) == index) {
            if index == 5 {
                // Half the data, then gone.
                let _ = socket.write_all(&data[..data.len() / 2]).await;
                let _ = socket.flush().await;
            }
            if hang_up.reset {
                socket.abort();
            } else {
                socket.close();
            }
            let _ = socket.flush().await;
            return Err(format!("hung up after {index} steps ({})", if hang_up.reset { "reset" } else { "FIN" }));
        }
        step(&mut socket, command, expected).await?;
    }
    let _ = step(&mut socket, Some(b"QUIT\r\n"), 221).await;
    socket.close();
    let _ = socket.flush().await;
    Ok(())
}

/// The port on which a message for `destination` is offered: the MX's for the mailbox, the
/// submission port for outbound mail (the peers' address is in the device's LAN prefix).
pub const fn port_for(destination: Destination) -> u16 {
    match destination {
        Destination::Mailbox => 25,
        Destination::Smarthost => 587,
    }
}

/// Sends the messages from [`Records::next_to_offer`] on one after the other to `device` (a
/// pause drawn from `random` before each; one sender in eight hangs up part-way), each on the
/// port of its destination, recording which got `250`.
pub async fn sender(stack: Stack<'static>, device: embassy_net::Ipv4Address, messages: Vec<Offered>, mut random: ChaCha20Rng, records: SharedRecords) {
    let first = records.borrow().next_to_offer;
    for (index, message) in messages.iter().enumerate().skip(first) {
        Timer::after(Duration::from_millis(random.gen_range(0..20_000))).await;
        records.borrow_mut().next_to_offer = index + 1;
        let hang_up = random.gen_ratio(1, 8).then(|| HangUp { after_steps: random.gen_range(1..6), reset: random.gen_ratio(1, 2) });
        let endpoint = IpEndpoint::new(device.into(), port_for(message.destination));
        match send_one(stack, endpoint, message, hang_up).await {
            Ok(()) => records.borrow_mut().accepted.push(index),
            Err(reason) => records.borrow_mut().not_accepted.push((index, reason)),
        }
    }
}

/// How often the mailbox host misbehaves on purpose, in parts per thousand of deliveries.
#[derive(Clone, Copy, Debug)]
pub struct MailboxFaults {
    /// Answers `451 4.3.0` to the data instead of `250`.
    pub refuse_per_mille: u32,
    /// Closes the connection after reading the data, without an answer.
    pub drop_per_mille: u32,
    /// Until this much simulated time has passed since the boot (ms), every delivery is
    /// refused: a mailbox host that is down, so accepted mail piles up in the spool.
    pub outage_until_ms: u64,
}

/// The LAN mailbox host: an LMTP server (RFC 2033) on `port` that keeps every message it
/// answers `250` for, and refuses or drops some on purpose.
pub async fn mailbox_host(stack: Stack<'static>, port: u16, faults: MailboxFaults, mut random: ChaCha20Rng, records: SharedRecords) {
    let mut receive_buffer = vec![0u8; 8192];
    let mut transmit_buffer = vec![0u8; 2048];
    loop {
        let mut socket = TcpSocket::new(stack, &mut receive_buffer, &mut transmit_buffer);
        socket.set_timeout(Some(Duration::from_secs(300)));
        if socket.accept(port).await.is_err() {
            continue;
        }
        let connection = connection_opened(&records, Destination::Mailbox);
        let _ = serve_lmtp(&mut socket, connection, faults, &mut random, &records).await;
        connection_ended(Destination::Mailbox, connection);
        end_connection(&mut socket, false).await;
    }
}

/// Ends a peer's side of a connection so that the socket can accept the next one: a reset
/// when the peer `dropped` it on purpose, else its FIN after what it still has to send.
pub async fn end_connection(socket: &mut TcpSocket<'_>, dropped: bool) {
    if dropped {
        socket.abort();
    } else {
        socket.close();
    }
    let _ = socket.flush().await;
    socket.abort();
}

thread_local! {
    /// Per destination (see [`Destination::slot`]), the last delivery connection and when it
    /// ended (`None`: still open); connection 0: none yet.
    static CONNECTIONS: std::cell::Cell<[(u32, Option<u64>); 2]> = const { std::cell::Cell::new([(0, None); 2]) };
}

/// Numbers a delivery connection `destination` accepted, and notes it open.
pub fn connection_opened(records: &SharedRecords, destination: Destination) -> u32 {
    let mut records = records.borrow_mut();
    records.connections += 1;
    let mut connections = CONNECTIONS.get();
    connections[destination.slot()] = (records.connections, None);
    CONNECTIONS.set(connections);
    records.connections
}

/// Notes that `destination`'s delivery connection `connection` ended now.
pub fn connection_ended(destination: Destination, connection: u32) {
    let mut connections = CONNECTIONS.get();
    connections[destination.slot()] = (connection, Some(embassy_time::Instant::now().as_millis()));
    CONNECTIONS.set(connections);
}

/// The power cut now, as the mailbox host and the smarthost saw it.
pub fn power_cut_now(boot: u32) -> PowerCut {
    let now = embassy_time::Instant::now().as_millis();
    let interrupted = CONNECTIONS
        .get()
        .into_iter()
        .filter(|&(connection, ended)| connection > 0 && ended.is_none_or(|ended| now.saturating_sub(ended) < RECORDING_GRACE_MS))
        .map(|(connection, _)| connection)
        .collect();
    PowerCut { boot, interrupted }
}

async fn serve_lmtp(socket: &mut TcpSocket<'_>, connection: u32, faults: MailboxFaults, random: &mut ChaCha20Rng, records: &SharedRecords) -> Option<()> {
    let mut pending = Vec::new();
    socket.write_all(b"220 mailbox.lan LMTP ready\r\n").await.ok()?;
    let mut recipients: Vec<String> = Vec::new();
    // Deliveries of this connection whose 250 the device has not yet shown it read.
    let mut unconfirmed: Vec<usize> = Vec::new();
    loop {
        let command = line(socket, &mut pending).await?;
        for index in unconfirmed.drain(..) {
            records.borrow_mut().delivered[index].confirmed = true;
        }
        let upper = String::from_utf8_lossy(&command).to_ascii_uppercase();
        if upper.starts_with("LHLO") {
            socket.write_all(b"250-mailbox.lan\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n").await.ok()?;
        } else if upper.starts_with("MAIL FROM:") {
            recipients.clear();
            socket.write_all(b"250 2.1.0 ok\r\n").await.ok()?;
        } else if upper.starts_with("RCPT TO:") {
            let text = String::from_utf8_lossy(&command);
            let address = text.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(address, _)| address.to_string());
            recipients.push(address.unwrap_or_default());
            socket.write_all(b"250 2.1.5 ok\r\n").await.ok()?;
        } else if upper == "DATA" {
            socket.write_all(b"354 go ahead\r\n").await.ok()?;
            let content = read_data(socket, &mut pending).await?;
            let roll = random.gen_range(0..1000);
            if roll < faults.drop_per_mille {
                records.borrow_mut().dropped_deliveries += 1;
                socket.abort();
                return None;
            }
            let refuse = roll < faults.drop_per_mille + faults.refuse_per_mille || embassy_time::Instant::now().as_millis() < faults.outage_until_ms;
            for recipient in recipients.drain(..) {
                if refuse {
                    records.borrow_mut().refused_deliveries += 1;
                    socket.write_all(b"451 4.3.0 try again later\r\n").await.ok()?;
                } else {
                    if std::env::var_os("HOMEMX_SIM_TRACE").is_some() {
                        eprintln!("{} ms: mailbox host takes a message for {recipient}, {} bytes", embassy_time::Instant::now().as_millis(), content.len());
                    }
                    {
                        let mut records = records.borrow_mut();
                        unconfirmed.push(records.delivered.len());
                        let boot = records.boot;
                        records.delivered.push(Delivery {
                            recipient,
                            content: content.clone(),
                            confirmed: false,
                            boot,
                            connection,
                            destination: Destination::Mailbox,
                        });
                    }
                    socket.write_all(b"250 2.0.0 delivered\r\n").await.ok()?;
                }
            }
        } else if upper == "RSET" {
            recipients.clear();
            socket.write_all(b"250 2.0.0 ok\r\n").await.ok()?;
        } else if upper == "QUIT" {
            socket.write_all(b"221 2.0.0 bye\r\n").await.ok()?;
            return Some(());
        } else if upper == "NOOP" {
            socket.write_all(b"250 2.0.0 ok\r\n").await.ok()?;
        } else {
            socket.write_all(b"500 5.5.2 unknown command\r\n").await.ok()?;
        }
    }
}
