//! The provider's backup MX as a scripted peer: a POP3 server (RFC 1939, with CAPA and response
//! codes of RFC 2449 and STLS of RFC 2595) that the device fetches from, written from the RFCs,
//! independently of the device's client (`homemx_pop3`). It serves any `embedded-io-async`
//! stream (the TLS wrapper's in the run, an in-memory pipe in the tests), and fails on purpose
//! from a seeded stream: it drops the connection in the middle of a RETR, before it applies a
//! QUIT, or after it applied a QUIT but before its `+OK` (the device cannot know the deletions
//! happened).
//!
//! The maildrop ([`Mailbox`]) is shared state that survives the device's power cuts (written
//! to the resume file like [`crate::peers::Records`]): the messages still on the server with
//! stable UIDLs, and a log of the QUITs that deleted messages. [`check`] holds the invariant
//! on it: a message is deleted at the server only after it is durable in the device's spool,
//! so every deleted message reaches the mailbox host; and it arrives once, unless the device
//! could not know it had already been delivered.
//!
//! In a run: make the messages with [`generate_messages`] and the maildrop with
//! [`Mailbox::new`] at the first boot (then carry the [`Mailbox`] in the resume file beside the
//! records); for each connection the device opens, [`serve`] the (TLS) stream with the boot
//! and a seeded stream, then close it (abort it after [`SessionEnd::Dropped`]); keep the
//! backup messages' deliveries ([`Mailbox::message_index`]) out of [`invariants::verdict`] and
//! give them to [`check`] at the end.
//!
//! Owns: the backup MX's maildrop and its commit log. Calls: `invariants`, `peers`, `tls_peer`.

use std::cell::RefCell;
use std::rc::Rc;

use std::sync::Arc;

use embassy_net::tcp::TcpSocket;
use embassy_net::Stack;
use embassy_time::Duration;
use embedded_io_async::{Read, Write};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rustls::ServerConfig;

use crate::invariants;
use crate::peers::{Destination, Offered, Records};
use crate::tls_peer::TlsStream;

/// A message held at the backup MX for the device.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BackupMessage {
    /// Its unique-id listing (RFC 1939 7): stable across sessions and boots.
    pub uidl: String,
    /// The recipient its `Delivered-To` header names (the one the device must deliver it to).
    pub recipient: String,
    /// The message (header and body, CRLF lines), before dot-stuffing.
    pub content: Vec<u8>,
    /// How many times the server sent it whole in answer to RETR (body and final dot written).
    pub served_whole: u32,
}

/// A QUIT that removed messages from the maildrop (the UPDATE state of RFC 1939).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Commit {
    /// The login session it ended (numbered from 1 across boots).
    pub session: u32,
    /// The device's boot then.
    pub boot: u32,
    /// The simulated time the deletions took effect (ms).
    pub at_ms: u64,
    /// The messages removed, by index into [`Mailbox::messages`] (their UIDL and content there).
    pub deleted: Vec<usize>,
    /// Whether the server wrote and flushed its `+OK` afterwards. If not, the device cannot
    /// know the deletions happened (RFC 1939 gives it no way to ask).
    pub answered: bool,
}

/// The faults the server injected, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FaultCounts {
    /// Connections dropped in the middle of a RETR body.
    pub dropped_in_retrieve: u32,
    /// Connections dropped at QUIT before the deletions were applied.
    pub dropped_before_quit: u32,
    /// Connections dropped at QUIT after the deletions were applied, before the `+OK`.
    pub dropped_after_quit: u32,
}

impl FaultCounts {
    /// Every fault injected.
    pub fn total(&self) -> u32 {
        self.dropped_in_retrieve + self.dropped_before_quit + self.dropped_after_quit
    }
}

/// The backup MX's maildrop and what happened to it (kept across the device's boots).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Mailbox {
    /// The login name the server accepts.
    pub user: String,
    /// The password the server accepts.
    pub password: String,
    /// Every message ever deposited (an index names a message for good).
    pub messages: Vec<BackupMessage>,
    /// The messages still on the server, by index, in arrival order (message 1 first).
    pub on_server: Vec<usize>,
    /// The QUITs that deleted messages, in order.
    pub commits: Vec<Commit>,
    /// Login sessions so far (across boots).
    pub sessions: u32,
    /// The faults injected so far.
    pub faults: FaultCounts,
    /// A session holds the maildrop's lock (RFC 1939 4): not carried over a power cut, whose
    /// connections are gone with the boot.
    #[serde(skip)]
    locked: bool,
}

/// Shared between the server's sessions and the simulator (one thread: `Rc<RefCell>`).
pub type SharedMailbox = Rc<RefCell<Mailbox>>;

impl Mailbox {
    /// A maildrop for `user` / `password` holding `messages`.
    pub fn new(user: &str, password: &str, messages: Vec<BackupMessage>) -> Mailbox {
        let on_server = (0..messages.len()).collect();
        Mailbox { user: user.into(), password: password.into(), messages, on_server, ..Mailbox::default() }
    }

    /// A message arrives at the backup MX (it joins the end of the maildrop).
    pub fn deposit(&mut self, message: BackupMessage) {
        self.on_server.push(self.messages.len());
        self.messages.push(message);
    }

    /// Every message deposited, as the wire tap and the flash check look for them.
    pub fn as_offered(&self) -> Vec<Offered> {
        self.messages
            .iter()
            .map(|message| Offered { recipient: message.recipient.clone(), content: message.content.clone(), destination: Destination::Mailbox })
            .collect()
    }

    /// The backup message a delivery to the mailbox host carries (byte for byte but for the
    /// `Received:` header the device prepends), if any.
    pub fn message_index(&self, delivered: &[u8]) -> Option<usize> {
        let content = invariants::without_received(delivered);
        self.messages.iter().position(|message| message.content == content)
    }
}

/// How often the server drops the connection on purpose, in parts per thousand.
#[derive(Clone, Copy, Debug, Default)]
pub struct BackupMxFaults {
    /// Of RETRs: half the body is written, then the connection is dropped.
    pub drop_in_retrieve_per_mille: u32,
    /// Of QUITs in the TRANSACTION state: dropped before the deletions are applied.
    pub drop_before_quit_per_mille: u32,
    /// Of QUITs in the TRANSACTION state: the deletions are applied, then dropped before `+OK`.
    pub drop_after_quit_per_mille: u32,
}

/// How a connection starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// TLS from the first octet (port 995): greeting, then the login is allowed.
    ImplicitTls,
    /// In clear (port 110): greeting; CAPA offers STLS; no login before it. Its `+OK` ends the
    /// call with [`SessionEnd::StartTls`].
    PlainThenStls,
    /// After the `+OK` to STLS and the handshake: no second greeting (RFC 2595 4).
    AfterStls,
}

/// How a call to [`serve`] ended. After anything but `StartTls` the caller closes the
/// connection; after `Dropped` it must abort it (no TLS close_notify, a TCP reset or nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client sent QUIT and had the `+OK` (the deletions, if any, took effect).
    Quit {
        /// Messages deleted.
        deleted: usize,
    },
    /// `+OK` to STLS was sent: run the TLS handshake, then serve the TLS stream with
    /// [`Opening::AfterStls`].
    StartTls,
    /// The client closed the connection, it broke, or the client sent a line longer than
    /// RFC 2449 allows: no UPDATE state, nothing deleted.
    ClientGone,
    /// The server dropped the connection on purpose.
    Dropped(Fault),
}

/// A fault the server injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// In the middle of a RETR body.
    InRetrieve,
    /// At QUIT, before the deletions.
    BeforeQuit,
    /// At QUIT, after the deletions, before the `+OK`.
    AfterQuitApplied,
}

/// Longest command line, CRLF included (RFC 2449 4).
const COMMAND_MAX: usize = 255;

/// The maildrop as one login session sees it (RFC 1939 5: numbers fixed for the session).
struct Transaction {
    session: u32,
    /// Indices into [`Mailbox::messages`]: message number `n` is `maildrop[n - 1]`.
    maildrop: Vec<usize>,
    marked: Vec<bool>,
    _lock: Lock,
}

/// The maildrop's lock, released when the session ends however it ends.
struct Lock(SharedMailbox);

impl Drop for Lock {
    fn drop(&mut self) {
        self.0.borrow_mut().locked = false;
    }
}

enum Line {
    Command(Vec<u8>),
    TooLong,
    End,
}

async fn read_line<S: Read>(stream: &mut S, pending: &mut Vec<u8>) -> Line {
    loop {
        if let Some(end) = pending.windows(2).position(|pair| pair == b"\r\n") {
            let mut line: Vec<u8> = pending.drain(..end + 2).collect();
            line.truncate(end);
            return if end + 2 > COMMAND_MAX { Line::TooLong } else { Line::Command(line) };
        }
        if pending.len() >= COMMAND_MAX {
            return Line::TooLong;
        }
        let mut buffer = [0u8; 512];
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return Line::End,
            Ok(count) => pending.extend_from_slice(&buffer[..count]),
        }
    }
}

/// Writes `bytes` and flushes; false when the connection is gone.
async fn send<S: Write>(stream: &mut S, bytes: &[u8]) -> bool {
    stream.write_all(bytes).await.is_ok() && stream.flush().await.is_ok()
}

/// A multi-line response's data: dot-stuffed (RFC 1939 3), ending in CRLF, then the final dot.
fn multiline(content: &[u8]) -> Vec<u8> {
    let mut out = crate::peers::dot_stuffed(content);
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The message number argument, if it names a message of the session not marked deleted.
fn message_number(argument: &str, transaction: &Transaction) -> Option<usize> {
    let number: usize = argument.trim().parse().ok()?;
    (number >= 1 && number <= transaction.maildrop.len() && !transaction.marked[number - 1]).then_some(number)
}

/// Serves one connection (or, with STLS, its part before or after the handshake) until QUIT,
/// the client's end, or a fault. `boot` is the device's boot now (for the commit log); the
/// faults are drawn from `random`.
pub async fn serve<S: Read + Write>(
    stream: &mut S,
    mailbox: &SharedMailbox,
    opening: Opening,
    boot: u32,
    faults: BackupMxFaults,
    random: &mut ChaCha20Rng,
) -> SessionEnd {
    let tls = opening != Opening::PlainThenStls;
    if opening != Opening::AfterStls && !send(stream, b"+OK backup-mx.provider.example POP3 server ready\r\n").await {
        return SessionEnd::ClientGone;
    }
    // Bytes after the STLS command are never carried into TLS: a new call starts empty.
    let mut pending = Vec::new();
    let mut user: Option<String> = None;
    let mut transaction: Option<Transaction> = None;
    loop {
        let line = match read_line(stream, &mut pending).await {
            Line::Command(line) => line,
            Line::TooLong => {
                let _ = send(stream, b"-ERR line too long\r\n").await;
                return SessionEnd::ClientGone;
            }
            Line::End => return SessionEnd::ClientGone,
        };
        let text = String::from_utf8_lossy(&line).into_owned();
        if std::env::var_os("HOMEMX_SIM_TRACE").is_some() {
            eprintln!("{} ms: backup MX got {text:?}", embassy_time::Instant::now().as_millis());
        }
        let (keyword, argument) = text.split_once(' ').unwrap_or((&text, ""));
        let keyword = keyword.to_ascii_uppercase();
        let reply: Vec<u8> = match (keyword.as_str(), transaction.as_mut()) {
            ("CAPA", _) => {
                let mut reply = b"+OK capability list follows\r\n".to_vec();
                reply.extend_from_slice(if tls { b"USER\r\n".as_slice() } else { b"STLS\r\n".as_slice() });
                reply.extend_from_slice(b"UIDL\r\nRESP-CODES\r\nIMPLEMENTATION homemx-sim\r\n.\r\n");
                reply
            }
            ("NOOP", Some(_)) => b"+OK\r\n".to_vec(),
            ("STLS", None) if !tls => {
                let _ = send(stream, b"+OK begin TLS negotiation\r\n").await;
                return SessionEnd::StartTls;
            }
            ("STLS", _) => b"-ERR STLS not allowed now\r\n".to_vec(),
            ("USER", None) if !tls => b"-ERR [AUTH] STLS first: no login in clear\r\n".to_vec(),
            ("USER", None) => {
                user = Some(argument.to_string());
                b"+OK send PASS\r\n".to_vec()
            }
            ("PASS", None) => {
                let name = user.take();
                let mut shared = mailbox.borrow_mut();
                if !tls || name.is_none() {
                    b"-ERR [AUTH] USER first\r\n".to_vec()
                } else if name.as_deref() != Some(shared.user.as_str()) || argument != shared.password {
                    b"-ERR [AUTH] invalid user name or password\r\n".to_vec()
                } else if shared.locked {
                    b"-ERR [IN-USE] maildrop locked by another session\r\n".to_vec()
                } else {
                    shared.locked = true;
                    shared.sessions += 1;
                    let maildrop = shared.on_server.clone();
                    let octets: usize = maildrop.iter().map(|&index| shared.messages[index].content.len()).sum();
                    let reply = format!("+OK maildrop has {} messages ({octets} octets)\r\n", maildrop.len());
                    let marked = vec![false; maildrop.len()];
                    transaction = Some(Transaction { session: shared.sessions, maildrop, marked, _lock: Lock(mailbox.clone()) });
                    reply.into_bytes()
                }
            }
            ("QUIT", None) => {
                let _ = send(stream, b"+OK bye\r\n").await;
                return SessionEnd::Quit { deleted: 0 };
            }
            ("STAT", Some(transaction)) => {
                let shared = mailbox.borrow();
                let live = transaction.maildrop.iter().zip(&transaction.marked).filter(|(_, marked)| !**marked);
                let (count, octets) = live.fold((0, 0), |(count, octets), (&index, _)| (count + 1, octets + shared.messages[index].content.len()));
                format!("+OK {count} {octets}\r\n").into_bytes()
            }
            ("LIST" | "UIDL", Some(transaction)) => {
                let shared = mailbox.borrow();
                let entry = |number: usize| {
                    let message = &shared.messages[transaction.maildrop[number - 1]];
                    if keyword == "LIST" { format!("{number} {}", message.content.len()) } else { format!("{number} {}", message.uidl) }
                };
                if argument.is_empty() {
                    let mut reply = String::from("+OK\r\n");
                    for number in (1..=transaction.maildrop.len()).filter(|number| !transaction.marked[number - 1]) {
                        reply.push_str(&entry(number));
                        reply.push_str("\r\n");
                    }
                    reply.push_str(".\r\n");
                    reply.into_bytes()
                } else {
                    match message_number(argument, transaction) {
                        Some(number) => format!("+OK {}\r\n", entry(number)).into_bytes(),
                        None => b"-ERR no such message\r\n".to_vec(),
                    }
                }
            }
            ("RETR", Some(transaction)) => match message_number(argument, transaction) {
                Some(number) => {
                    let index = transaction.maildrop[number - 1];
                    let content = mailbox.borrow().messages[index].content.clone();
                    let mut reply = format!("+OK {} octets\r\n", content.len()).into_bytes();
                    reply.extend_from_slice(&multiline(&content));
                    if random.gen_range(0..1000) < faults.drop_in_retrieve_per_mille {
                        mailbox.borrow_mut().faults.dropped_in_retrieve += 1;
                        let _ = send(stream, &reply[..reply.len() / 2]).await;
                        return SessionEnd::Dropped(Fault::InRetrieve);
                    }
                    if stream.write_all(&reply).await.is_err() {
                        return SessionEnd::ClientGone;
                    }
                    // Served whole once the transport has it all: the device may read the last
                    // byte (and the power may go) before the flush below sees its acknowledgement.
                    mailbox.borrow_mut().messages[index].served_whole += 1;
                    if stream.flush().await.is_err() {
                        return SessionEnd::ClientGone;
                    }
                    continue;
                }
                None => b"-ERR no such message\r\n".to_vec(),
            },
            ("DELE", Some(transaction)) => match message_number(argument, transaction) {
                Some(number) => {
                    transaction.marked[number - 1] = true;
                    format!("+OK message {number} deleted\r\n").into_bytes()
                }
                None => b"-ERR no such message\r\n".to_vec(),
            },
            ("RSET", Some(transaction)) => {
                transaction.marked.iter_mut().for_each(|marked| *marked = false);
                format!("+OK maildrop has {} messages\r\n", transaction.maildrop.len()).into_bytes()
            }
            ("QUIT", Some(transaction)) => {
                let roll = random.gen_range(0..1000);
                if roll < faults.drop_before_quit_per_mille {
                    mailbox.borrow_mut().faults.dropped_before_quit += 1;
                    return SessionEnd::Dropped(Fault::BeforeQuit);
                }
                let deleted: Vec<usize> =
                    transaction.maildrop.iter().zip(&transaction.marked).filter(|(_, marked)| **marked).map(|(&index, _)| index).collect();
                let commit = {
                    let mut shared = mailbox.borrow_mut();
                    shared.on_server.retain(|index| !deleted.contains(index));
                    (!deleted.is_empty()).then(|| {
                        let at_ms = embassy_time::Instant::now().as_millis();
                        shared.commits.push(Commit { session: transaction.session, boot, at_ms, deleted: deleted.clone(), answered: false });
                        shared.commits.len() - 1
                    })
                };
                if roll < faults.drop_before_quit_per_mille + faults.drop_after_quit_per_mille {
                    mailbox.borrow_mut().faults.dropped_after_quit += 1;
                    return SessionEnd::Dropped(Fault::AfterQuitApplied);
                }
                let left = mailbox.borrow().on_server.len();
                if !send(stream, format!("+OK bye ({} deleted, {left} left)\r\n", deleted.len()).as_bytes()).await {
                    return SessionEnd::ClientGone;
                }
                if let Some(commit) = commit {
                    mailbox.borrow_mut().commits[commit].answered = true;
                }
                return SessionEnd::Quit { deleted: deleted.len() };
            }
            _ => b"-ERR unknown command or not allowed now\r\n".to_vec(),
        };
        if !send(stream, &reply).await {
            return SessionEnd::ClientGone;
        }
    }
}

/// `count` messages for the backup MX under `seed`, each for one of `recipients` (the
/// device's: it delivers a message for another address to its postmaster): a `Delivered-To`
/// header (how the device finds the recipient), a provider's `Received:` below it, `From`,
/// `To`, `Message-ID`, a body with a unique marker line, lines of just `.` and `..` and others
/// starting with a dot (dot-stuffing), some of them close to the 998-octet limit; 100 octets to
/// 40 KB in all.
pub fn generate_messages(random: &mut ChaCha20Rng, seed: u64, count: usize, recipients: &[&str]) -> Vec<BackupMessage> {
    (0..count)
        .map(|index| {
            let recipient = recipients[random.gen_range(0..recipients.len())].to_string();
            let uidl = format!("bmx-{seed:x}-{index}-{:08x}", random.gen::<u32>());
            let length = if random.gen_ratio(1, 4) { random.gen_range(8_000..40_000) } else { random.gen_range(100..4_000) };
            let mut content = format!(
                "Delivered-To: {recipient}\r\nReceived: from relay.example.org by backup-mx.provider.example with ESMTP id {uidl};\r\n\tThu, 1 Jan 2026 00:00:00 +0000\r\nFrom: remote{index}@example.org\r\nTo: {recipient}\r\nSubject: held at the backup MX {seed}/{index}\r\nMessage-ID: <{seed}.{index}.backup@sim.example.org>\r\n\r\nmarker: backup-mx {seed}/{index} {uidl}\r\n.\r\n..\r\n"
            )
            .into_bytes();
            while content.len() < length {
                let line_length = if random.gen_ratio(1, 25) { random.gen_range(900..=998) } else { random.gen_range(0..120) };
                if random.gen_ratio(1, 8) {
                    content.push(b'.');
                }
                for _ in 0..line_length {
                    content.push(random.gen_range(b' '..=b'~'));
                }
                content.extend_from_slice(b"\r\n");
            }
            BackupMessage { uidl, recipient, content, served_whole: 0 }
        })
        .collect()
}

/// The invariant on the records of a run: a message is deleted at the backup MX only after it
/// is durable in the device's spool. So, one sentence per violation:
/// - every message a QUIT deleted reached the mailbox host (byte for byte but for the device's
///   `Received:` header, to the recipient its `Delivered-To` names); a deleted message that
///   never arrived is lost when the queue was empty at the end (`queue_empty_at_end`), or when
///   a power cut came after its deletion; without either it may still be queued;
/// - no message was deleted twice, and none arrived that the server never sent whole;
/// - a message arrived once. A repeat is allowed where the device could not know of the first
///   delivery: the mailbox host's rule ([`invariants::verdict`]: an earlier delivery whose
///   `250` the device may not have read, or in the session a power cut interrupted); or where
///   it could not know of the deletion: the QUIT that deleted it was applied without the
///   server's `+OK` and the server had sent it whole more than once (it was fetched again).
///
/// Messages still on the server at the end are fine, delivered or not.
pub fn check(mailbox: &Mailbox, records: &Records, queue_empty_at_end: bool) -> Vec<String> {
    let mut violations = Vec::new();
    let count = mailbox.messages.len();
    let mut deliveries = vec![Vec::new(); count];
    for delivery in &records.delivered {
        if let Some(index) = mailbox.message_index(&delivery.content) {
            deliveries[index].push(delivery);
        }
    }
    let mut deleted_by = vec![Vec::new(); count];
    for commit in &mailbox.commits {
        for &index in &commit.deleted {
            deleted_by[index].push(commit);
        }
    }
    for (index, message) in mailbox.messages.iter().enumerate() {
        let name = format!("backup MX message {index} (UIDL {})", message.uidl);
        let arrived = &deliveries[index];
        if deleted_by[index].len() > 1 {
            violations.push(format!("{name} was deleted at the server {} times", deleted_by[index].len()));
        }
        if let (Some(commit), true) = (deleted_by[index].first(), arrived.is_empty()) {
            let cut_after = records.cuts.iter().find(|cut| cut.boot >= commit.boot);
            if queue_empty_at_end || cut_after.is_some() {
                violations.push(format!(
                    "{name} was deleted at the server (session {}, boot {}, {} ms, QUIT {}) but never reached the mailbox host{}: lost",
                    commit.session,
                    commit.boot,
                    commit.at_ms,
                    if commit.answered { "answered" } else { "not answered" },
                    match cut_after {
                        Some(cut) => format!(", and the power was cut after it (end of boot {})", cut.boot),
                        None => String::from(", and the queue is empty"),
                    }
                ));
            }
        }
        if !arrived.is_empty() && message.served_whole == 0 {
            violations.push(format!("{name} reached the mailbox host but the server never sent it whole"));
        }
        for delivery in arrived.iter().filter(|delivery| delivery.recipient != message.recipient) {
            violations.push(format!("{name} for {} was delivered to {}", message.recipient, delivery.recipient));
        }
        if arrived.len() > 1 {
            // The mailbox host's rule on repeats, on this message's deliveries alone.
            let offered = [Offered { recipient: message.recipient.clone(), content: message.content.clone(), destination: Destination::Mailbox }];
            let delivered = arrived.iter().map(|&delivery| crate::peers::Delivery { recipient: message.recipient.clone(), ..delivery.clone() }).collect();
            let alone = Records { delivered, cuts: records.cuts.clone(), ..Records::default() };
            let unknown_deletion = deleted_by[index].iter().any(|commit| !commit.answered) && message.served_whole > 1;
            if !invariants::verdict(&offered, &alone).violations.is_empty() && !unknown_deletion {
                let confirmed = arrived.iter().filter(|delivery| delivery.confirmed).count();
                violations.push(format!(
                    "{name} reached the mailbox host {} times ({confirmed} confirmed; sent whole {} times; deletion {})",
                    arrived.len(),
                    message.served_whole,
                    match deleted_by[index].first() {
                        Some(commit) if commit.answered => "answered",
                        Some(_) => "not answered",
                        None => "none",
                    }
                ));
            }
        }
    }
    violations
}

/// How the backup MX speaks TLS: implicit on 995, or STLS on 110 (RFC 2595).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupTls {
    /// TLS from the first octet, port 995.
    Implicit,
    /// In clear until STLS, port 110.
    Stls,
}

impl BackupTls {
    /// The port.
    pub const fn port(self) -> u16 {
        match self {
            BackupTls::Implicit => 995,
            BackupTls::Stls => 110,
        }
    }
}

/// The backup MX on `stack`: accepts the device's connections one at a time for ever, and
/// serves each with [`serve`] over TLS with the certificate `tls` (after STLS or from the first
/// octet); the boot `boot` goes into the commit log.
pub async fn backup_mx(
    stack: Stack<'static>,
    mode: BackupTls,
    tls: Arc<ServerConfig>,
    mailbox: SharedMailbox,
    boot: u32,
    faults: BackupMxFaults,
    mut random: ChaCha20Rng,
) {
    // A RETR of a 40 KB message must not wait on the device for every segment.
    let mut receive_buffer = vec![0u8; 4096];
    let mut transmit_buffer = vec![0u8; 16384];
    loop {
        let mut socket = TcpSocket::new(stack, &mut receive_buffer, &mut transmit_buffer);
        socket.set_timeout(Some(Duration::from_secs(300)));
        if socket.accept(mode.port()).await.is_err() {
            continue;
        }
        let ending = serve_connection(&mut socket, mode, &tls, &mailbox, boot, faults, &mut random).await;
        if std::env::var_os("HOMEMX_SIM_TRACE").is_some() {
            eprintln!("{} ms: backup MX connection ended: {ending:?}", embassy_time::Instant::now().as_millis());
        }
        crate::peers::end_connection(&mut socket, matches!(ending, Some(SessionEnd::Dropped(_)))).await;
    }
}

/// One connection: the part in clear up to STLS (if that is the mode), the handshake, the
/// session inside TLS. `None`: the handshake failed.
async fn serve_connection(
    socket: &mut TcpSocket<'_>,
    mode: BackupTls,
    tls: &Arc<ServerConfig>,
    mailbox: &SharedMailbox,
    boot: u32,
    faults: BackupMxFaults,
    random: &mut ChaCha20Rng,
) -> Option<SessionEnd> {
    if mode == BackupTls::Stls {
        match serve(socket, mailbox, Opening::PlainThenStls, boot, faults, random).await {
            SessionEnd::StartTls => {}
            other => return Some(other),
        }
    }
    let mut stream = TlsStream::accept(&mut *socket, tls.clone()).await.ok()?;
    let opening = if mode == BackupTls::Implicit { Opening::ImplicitTls } else { Opening::AfterStls };
    let ending = serve(&mut stream, mailbox, opening, boot, faults, random).await;
    if !matches!(ending, SessionEnd::Dropped(_)) {
        let _ = stream.close().await;
    }
    Some(ending)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashSet, VecDeque};
    use std::task::{Poll, Waker};

    use embedded_io_async::{ErrorKind, ErrorType};
    use homemx_exchange::{exchange, flush, Inbox};
    use homemx_pop3::{Failure, LoginRefusal, Pop3Config, Pop3Event, Pop3Session, TlsMode};
    use rand::SeedableRng;

    use super::*;
    use crate::peers::{Delivery, PowerCut};

    /// One direction of an in-memory connection: bytes, whether its writer hung up, everything
    /// ever written (a transcript), and the waiting reader.
    #[derive(Default)]
    struct Channel {
        bytes: VecDeque<u8>,
        closed: bool,
        transcript: Vec<u8>,
        reader: Option<Waker>,
    }

    /// One end of an in-memory connection. Dropping it closes both directions: the other end
    /// reads the end of the stream and its writes fail.
    struct End {
        incoming: Rc<RefCell<Channel>>,
        outgoing: Rc<RefCell<Channel>>,
    }

    fn connection() -> (End, End) {
        let (one, two) = (Rc::new(RefCell::new(Channel::default())), Rc::new(RefCell::new(Channel::default())));
        (End { incoming: one.clone(), outgoing: two.clone() }, End { incoming: two, outgoing: one })
    }

    impl Drop for End {
        fn drop(&mut self) {
            for channel in [&self.incoming, &self.outgoing] {
                let mut channel = channel.borrow_mut();
                channel.closed = true;
                if let Some(reader) = channel.reader.take() {
                    reader.wake();
                }
            }
        }
    }

    impl ErrorType for End {
        type Error = ErrorKind;
    }

    impl Read for End {
        async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, ErrorKind> {
            std::future::poll_fn(|context| {
                let mut channel = self.incoming.borrow_mut();
                if channel.bytes.is_empty() {
                    if channel.closed {
                        return Poll::Ready(Ok(0));
                    }
                    channel.reader = Some(context.waker().clone());
                    return Poll::Pending;
                }
                let count = buffer.len().min(channel.bytes.len());
                for (slot, byte) in buffer.iter_mut().zip(channel.bytes.drain(..count)) {
                    *slot = byte;
                }
                Poll::Ready(Ok(count))
            })
            .await
        }
    }

    impl Write for End {
        async fn write(&mut self, data: &[u8]) -> Result<usize, ErrorKind> {
            let mut channel = self.outgoing.borrow_mut();
            if channel.closed {
                return Err(ErrorKind::BrokenPipe);
            }
            channel.bytes.extend(data);
            channel.transcript.extend_from_slice(data);
            if let Some(reader) = channel.reader.take() {
                reader.wake();
            }
            Ok(data.len())
        }

        /// The bytes are in the other end's queue: nothing more to wait for.
        async fn flush(&mut self) -> Result<(), ErrorKind> {
            Ok(())
        }
    }

    const USER: &str = "home@provider.example";
    const PASSWORD: &str = "backup secret 7";
    const RECIPIENTS: [&str; 2] = ["anna@home.example", "ben@home.example"];

    /// What the device keeps across fetches in these tests: its spool and its seen UIDLs. A
    /// `late` device (wrong on purpose) keeps what it fetched in RAM until the session is over,
    /// so it deletes messages at the server before they are durable.
    #[derive(Default)]
    struct Device {
        spool: Vec<(String, Vec<u8>)>,
        seen: HashSet<String>,
        late: bool,
        in_ram: Vec<(String, Vec<u8>)>,
    }

    impl Device {
        /// The late device commits what it kept in RAM.
        fn settle(&mut self) {
            for (uidl, body) in self.in_ram.drain(..) {
                self.seen.insert(uidl.clone());
                self.spool.push((uidl, body));
            }
        }
    }

    /// How a fetch ended, as the device's session told it.
    #[derive(Debug, PartialEq, Eq)]
    struct Fetched {
        failure: Option<Failure>,
        deletions_final: bool,
        deleted: u32,
    }

    /// One fetch the device's way (`homemx_services::backup_mx::fetch`, with the spool and
    /// the seen records as maps): the real `homemx_pop3` session on the real driver loop
    /// (`homemx_exchange`); RETR the unseen, commit and record each, DELE it; DELE the seen.
    async fn device_fetch(mut stream: End, device: &mut Device, tls: TlsMode, password: &str) -> Fetched {
        let config = Pop3Config { username: USER, tls, message_size_max: 4 << 20, reply_timeout_ms: 60_000 };
        let mut session = Pop3Session::new(&config, 0).unwrap();
        let mut inbox = Inbox::<1024>::new();
        let mut listed: Vec<(u32, String)> = Vec::new();
        let mut position = 0;
        let mut body = Vec::new();
        let mut failure = None;
        loop {
            match session.poll(0) {
                Some(Pop3Event::StartTls) => {
                    assert!(flush(&mut stream, &mut session).await);
                    session.tls_established(0);
                }
                Some(Pop3Event::PasswordNeeded) => session.send_password(password.as_bytes(), 0).unwrap(),
                Some(Pop3Event::Listed(entry)) => listed.push((entry.number, entry.uidl.to_string())),
                Some(Pop3Event::MessageBegin { .. }) => body.clear(),
                Some(Pop3Event::MessageData(data)) => body.extend_from_slice(data),
                Some(Pop3Event::MessageEnd { number, .. }) => {
                    let uidl = listed.iter().find(|(listed, _)| *listed == number).map(|(_, uidl)| uidl.clone()).unwrap();
                    if device.late {
                        device.in_ram.push((uidl, std::mem::take(&mut body)));
                    } else {
                        device.spool.push((uidl.clone(), std::mem::take(&mut body)));
                        device.seen.insert(uidl);
                    }
                    session.delete(number, 0).unwrap();
                }
                Some(Pop3Event::Failed(reason)) => failure = Some(reason),
                Some(Pop3Event::Close { deletions_final, deleted }) => {
                    let _ = flush(&mut stream, &mut session).await;
                    return Fetched { failure, deletions_final, deleted };
                }
                Some(_) => {}
                None => {
                    if !session.is_ready() {
                        exchange(&mut stream, &mut session, &mut inbox, || 0).await;
                        continue;
                    }
                    match listed.get(position) {
                        Some((number, uidl)) => {
                            position += 1;
                            if device.seen.contains(uidl) { session.delete(*number, 0) } else { session.retrieve(*number, 0) }.unwrap();
                        }
                        None => session.finish(0).unwrap(),
                    }
                }
            }
        }
    }

    fn mailbox(count: usize, seed: u64) -> SharedMailbox {
        let messages = generate_messages(&mut ChaCha20Rng::seed_from_u64(seed), seed, count, &RECIPIENTS);
        Rc::new(RefCell::new(Mailbox::new(USER, PASSWORD, messages)))
    }

    /// Runs one fetch against the server; returns the device's view, the server's end and what
    /// the device sent.
    fn fetch(mailbox: &SharedMailbox, device: &mut Device, opening: Opening, faults: BackupMxFaults, password: &str) -> (Fetched, SessionEnd, String) {
        fetch_in_boot(mailbox, device, opening, faults, password, 1, &mut ChaCha20Rng::seed_from_u64(99))
    }

    fn fetch_in_boot(
        mailbox: &SharedMailbox,
        device: &mut Device,
        opening: Opening,
        faults: BackupMxFaults,
        password: &str,
        boot: u32,
        random: &mut ChaCha20Rng,
    ) -> (Fetched, SessionEnd, String) {
        let (server_end, device_end) = connection();
        let sent = device_end.outgoing.clone();
        let server = async {
            let mut stream = server_end;
            let mut end = serve(&mut stream, mailbox, opening, boot, faults, random).await;
            if end == SessionEnd::StartTls {
                end = serve(&mut stream, mailbox, Opening::AfterStls, boot, faults, random).await;
            }
            drop(stream);
            end
        };
        let tls = if opening == Opening::ImplicitTls { TlsMode::Implicit } else { TlsMode::StartTls };
        let (end, fetched) = embassy_futures::block_on(embassy_futures::join::join(server, device_fetch(device_end, device, tls, password)));
        let transcript = String::from_utf8(sent.borrow().transcript.clone()).unwrap();
        (fetched, end, transcript)
    }

    #[test]
    fn the_device_fetches_every_message_byte_for_byte_and_the_quit_deletes_them() {
        let mailbox = mailbox(8, 1);
        let contents: Vec<Vec<u8>> = mailbox.borrow().messages.iter().map(|message| message.content.clone()).collect();
        assert!(contents.iter().all(|content| content.windows(5).any(|window| window == b"\r\n.\r\n")), "a line of just a dot in each");
        assert!(contents.iter().any(|content| content.split(|&byte| byte == b'\n').any(|line| line.len() > 900)), "long lines");
        let mut device = Device::default();
        let (fetched, end, transcript) = fetch(&mailbox, &mut device, Opening::ImplicitTls, BackupMxFaults::default(), PASSWORD);
        println!("the device sent:\n{}", transcript.replace(PASSWORD, "<password>"));
        assert_eq!(fetched, Fetched { failure: None, deletions_final: true, deleted: 8 });
        assert_eq!(end, SessionEnd::Quit { deleted: 8 });
        assert_eq!(device.spool.iter().map(|(_, body)| body.clone()).collect::<Vec<_>>(), contents, "dot-stuffing undone exactly");
        let mailbox = mailbox.borrow();
        assert!(mailbox.on_server.is_empty());
        assert_eq!(mailbox.commits.len(), 1);
        assert_eq!((mailbox.commits[0].deleted.clone(), mailbox.commits[0].answered), ((0..8).collect(), true));
        assert!(mailbox.messages.iter().all(|message| message.served_whole == 1));
        assert!(transcript.starts_with(&format!("CAPA\r\nUSER {USER}\r\nPASS {PASSWORD}\r\nLIST\r\nUIDL\r\nRETR 1\r\nDELE 1\r\nRETR 2\r\n")));
        assert!(transcript.ends_with("DELE 8\r\nQUIT\r\n"));
        assert!(!mailbox.locked, "the lock is released");
    }

    #[test]
    fn stls_comes_before_the_login_and_the_fetch_goes_on_inside() {
        let mailbox = mailbox(3, 2);
        let mut device = Device::default();
        let (fetched, _, transcript) = fetch(&mailbox, &mut device, Opening::PlainThenStls, BackupMxFaults::default(), PASSWORD);
        println!("the device sent (STLS):\n{}", transcript.replace(PASSWORD, "<password>"));
        assert_eq!(fetched, Fetched { failure: None, deletions_final: true, deleted: 3 });
        assert!(transcript.starts_with(&format!("CAPA\r\nSTLS\r\nCAPA\r\nUSER {USER}\r\n")));
        assert!(mailbox.borrow().on_server.is_empty());
    }

    #[test]
    fn a_wrong_password_is_refused_and_nothing_is_touched() {
        let mailbox = mailbox(3, 3);
        let mut device = Device::default();
        let (fetched, end, _) = fetch(&mailbox, &mut device, Opening::ImplicitTls, BackupMxFaults::default(), "not the password");
        // The session QUITs after the refusal (and has its +OK: nothing was marked, nothing goes).
        assert_eq!(fetched, Fetched { failure: Some(Failure::LoginRefused(LoginRefusal::Credentials)), deletions_final: true, deleted: 0 });
        assert_eq!(end, SessionEnd::Quit { deleted: 0 });
        assert!(device.spool.is_empty());
        let mailbox = mailbox.borrow();
        assert_eq!((mailbox.on_server.len(), mailbox.sessions, mailbox.commits.len()), (3, 0, 0));
    }

    #[test]
    fn a_locked_maildrop_is_refused_in_use() {
        let mailbox = mailbox(2, 6);
        mailbox.borrow_mut().locked = true;
        let mut device = Device::default();
        let (fetched, _, _) = fetch(&mailbox, &mut device, Opening::ImplicitTls, BackupMxFaults::default(), PASSWORD);
        assert_eq!(fetched.failure, Some(Failure::LoginRefused(LoginRefusal::InUse)));
        mailbox.borrow_mut().locked = false;
        let (fetched, _, _) = fetch(&mailbox, &mut device, Opening::ImplicitTls, BackupMxFaults::default(), PASSWORD);
        assert_eq!(fetched, Fetched { failure: None, deletions_final: true, deleted: 2 });
    }

    #[test]
    fn a_drop_before_quit_deletes_nothing_and_the_next_fetch_deletes_without_retrieving() {
        let mailbox = mailbox(4, 4);
        let mut device = Device::default();
        let faults = BackupMxFaults { drop_before_quit_per_mille: 1000, ..BackupMxFaults::default() };
        let (fetched, end, _) = fetch(&mailbox, &mut device, Opening::ImplicitTls, faults, PASSWORD);
        assert_eq!(end, SessionEnd::Dropped(Fault::BeforeQuit));
        assert_eq!(fetched, Fetched { failure: Some(Failure::ConnectionLost), deletions_final: false, deleted: 0 });
        assert_eq!(device.spool.len(), 4, "fetched and committed");
        assert_eq!((mailbox.borrow().on_server.len(), mailbox.borrow().commits.len()), (4, 0), "but nothing deleted");
        let newcomer = generate_messages(&mut ChaCha20Rng::seed_from_u64(40), 40, 1, &RECIPIENTS).remove(0);
        mailbox.borrow_mut().deposit(newcomer.clone());
        let (fetched, _, transcript) = fetch(&mailbox, &mut device, Opening::ImplicitTls, BackupMxFaults::default(), PASSWORD);
        assert_eq!(fetched, Fetched { failure: None, deletions_final: true, deleted: 5 });
        assert_eq!(transcript.matches("RETR").count(), 1, "the seen messages are deleted without a second RETR");
        assert!(transcript.contains("RETR 5\r\n"));
        assert_eq!(device.spool.len(), 5);
        assert_eq!(device.spool[4].1, newcomer.content);
        let mailbox = mailbox.borrow();
        assert!(mailbox.on_server.is_empty() && mailbox.commits.len() == 1 && mailbox.faults.dropped_before_quit == 1);
        assert_eq!(mailbox.commits[0].deleted, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_drop_in_a_retrieve_or_after_the_quit_is_applied() {
        let mailbox = mailbox(3, 5);
        let mut device = Device::default();
        let faults = BackupMxFaults { drop_in_retrieve_per_mille: 1000, ..BackupMxFaults::default() };
        let (fetched, end, _) = fetch(&mailbox, &mut device, Opening::ImplicitTls, faults, PASSWORD);
        assert_eq!(end, SessionEnd::Dropped(Fault::InRetrieve));
        assert_eq!(fetched.failure, Some(Failure::ConnectionLost));
        assert!(device.spool.is_empty(), "half a message is not committed");
        assert_eq!(mailbox.borrow().on_server.len(), 3);
        assert_eq!(mailbox.borrow().messages[0].served_whole, 0);

        let faults = BackupMxFaults { drop_after_quit_per_mille: 1000, ..BackupMxFaults::default() };
        let (fetched, end, _) = fetch(&mailbox, &mut device, Opening::ImplicitTls, faults, PASSWORD);
        assert_eq!(end, SessionEnd::Dropped(Fault::AfterQuitApplied));
        assert_eq!(fetched, Fetched { failure: Some(Failure::ConnectionLost), deletions_final: false, deleted: 0 }, "the device cannot know");
        let mailbox = mailbox.borrow();
        assert!(mailbox.on_server.is_empty(), "yet the server deleted them");
        assert_eq!((mailbox.commits.len(), mailbox.commits[0].answered), (1, false));
        assert_eq!(mailbox.faults, FaultCounts { dropped_in_retrieve: 1, dropped_before_quit: 0, dropped_after_quit: 1 });
        assert_eq!(mailbox.faults.total(), 2);
    }

    /// Fetch sessions with the server's faults and power cuts between them, each spooled
    /// message delivered to the mailbox host at once; returns the mailbox and the records.
    fn faulty_run(late: bool) -> (Mailbox, Records) {
        // Mail keeps arriving at the backup MX: 4 messages at first, then 2 before each of 18 sessions.
        let mut arriving = generate_messages(&mut ChaCha20Rng::seed_from_u64(11), 11, 40, &RECIPIENTS).into_iter();
        let mailbox = Rc::new(RefCell::new(Mailbox::new(USER, PASSWORD, arriving.by_ref().take(4).collect())));
        let mut device = Device { late, ..Device::default() };
        let mut records = Records { boot: 1, ..Records::default() };
        let mut random = ChaCha20Rng::seed_from_u64(12);
        let faults = BackupMxFaults { drop_in_retrieve_per_mille: 150, drop_before_quit_per_mille: 300, drop_after_quit_per_mille: 300 };
        for _ in 0..80 {
            arriving.by_ref().take(2).for_each(|message| mailbox.borrow_mut().deposit(message));
            if mailbox.borrow().on_server.is_empty() {
                break;
            }
            let boot = records.boot;
            fetch_in_boot(&mailbox, &mut device, Opening::ImplicitTls, faults, PASSWORD, boot, &mut random);
            if random.gen_ratio(1, 3) {
                // The power goes: RAM is lost, the spool and the seen records stay.
                device.in_ram.clear();
                records.cuts.push(PowerCut { boot, interrupted: Vec::new() });
                records.boot += 1;
            }
            device.settle();
            for (_, body) in device.spool.drain(..) {
                records.connections += 1;
                let content = [b"Received: from backup-mx by mx with POP3S id x;\r\n\tdate\r\n".as_slice(), &body].concat();
                let recipient = mailbox.borrow().messages[mailbox.borrow().message_index(&content).unwrap()].recipient.clone();
                records.delivered.push(Delivery { recipient, content, confirmed: true, boot: records.boot, connection: records.connections, destination: Destination::Mailbox });
            }
        }
        let mailbox = mailbox.take();
        (mailbox, records)
    }

    #[test]
    fn under_faults_and_power_cuts_only_the_device_that_deletes_too_early_loses_mail() {
        let (mailbox, records) = faulty_run(false);
        println!("the device's way: {:?}, {} commits, {} cuts, {} deliveries", mailbox.faults, mailbox.commits.len(), records.cuts.len(), records.delivered.len());
        assert!(mailbox.faults.dropped_in_retrieve > 0 && mailbox.faults.dropped_before_quit > 0 && mailbox.faults.dropped_after_quit > 0);
        assert!(!records.cuts.is_empty());
        assert!(mailbox.on_server.is_empty(), "every message fetched and deleted in the end");
        assert_eq!((mailbox.messages.len(), records.delivered.len()), (40, 40), "each once");
        assert_eq!(check(&mailbox, &records, true), Vec::<String>::new());
        let (mailbox, records) = faulty_run(true);
        let violations = check(&mailbox, &records, true);
        println!("deleting before the commit: {violations:#?}");
        assert!(!violations.is_empty() && violations.iter().all(|violation| violation.contains("lost")));
    }

    #[test]
    fn the_messages_follow_from_the_seed() {
        let generate = |seed| generate_messages(&mut ChaCha20Rng::seed_from_u64(seed), seed, 40, &RECIPIENTS);
        let (one, again, other) = (generate(7), generate(7), generate(8));
        assert_eq!(one.iter().map(|message| &message.content).collect::<Vec<_>>(), again.iter().map(|message| &message.content).collect::<Vec<_>>());
        assert_ne!(one[0].content, other[0].content);
        assert!(one.iter().all(|message| (100..41_001).contains(&message.content.len())));
        assert!(one.iter().any(|message| message.content.len() > 8_000));
        let uidls: HashSet<&str> = one.iter().map(|message| message.uidl.as_str()).collect();
        assert_eq!(uidls.len(), 40);
        assert!(one.iter().all(|message| message.content.starts_with(format!("Delivered-To: {}\r\n", message.recipient).as_bytes())));
    }

    /// A mailbox after a fetch in boot 1 whose QUIT deleted message 0 (`answered`), and the
    /// device's delivery of it.
    fn after_fetch(answered: bool, served_whole: u32) -> (Mailbox, Delivery) {
        let mut mailbox = Mailbox::new(USER, PASSWORD, generate_messages(&mut ChaCha20Rng::seed_from_u64(9), 9, 2, &RECIPIENTS));
        mailbox.messages[0].served_whole = served_whole;
        mailbox.on_server.remove(0);
        mailbox.commits.push(Commit { session: 1, boot: 1, at_ms: 5_000, deleted: vec![0], answered });
        let mut content = b"Received: from backup-mx.provider.example by mx.home.example with POP3S id x;\r\n\tdate\r\n".to_vec();
        content.extend_from_slice(&mailbox.messages[0].content);
        let delivery = Delivery { recipient: mailbox.messages[0].recipient.clone(), content, confirmed: true, boot: 1, connection: 1, destination: Destination::Mailbox };
        (mailbox, delivery)
    }

    #[test]
    fn a_deleted_message_that_never_arrived_is_lost() {
        let (mailbox, delivery) = after_fetch(true, 1);
        let cut = PowerCut { boot: 1, interrupted: Vec::new() };
        let mut records = Records { boot: 2, cuts: vec![cut], ..Records::default() };
        let violations = check(&mailbox, &records, false);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].contains("lost") && violations[0].contains("power was cut"), "{violations:?}");
        assert_eq!(check(&mailbox, &Records::default(), true).len(), 1, "lost: the queue is empty at the end");
        assert!(check(&mailbox, &Records::default(), false).is_empty(), "no cut, queue not empty: it may still be queued");
        records.delivered.push(delivery.clone());
        assert!(check(&mailbox, &records, true).is_empty(), "delivered: fine; message 1, still on the server, too");
        let mut altered = delivery;
        altered.content.push(b'x');
        records.delivered = vec![altered];
        assert_eq!(check(&mailbox, &records, true).len(), 1, "an altered copy is no delivery");
    }

    #[test]
    fn a_repeat_is_allowed_only_where_the_device_could_not_know() {
        let (mailbox, delivery) = after_fetch(true, 1);
        let records = Records { delivered: vec![delivery.clone(), delivery.clone()], ..Records::default() };
        let violations = check(&mailbox, &records, true);
        assert!(violations.len() == 1 && violations[0].contains("2 times"), "two confirmed deliveries: {violations:?}");
        let unconfirmed = Delivery { confirmed: false, ..delivery.clone() };
        let records = Records { delivered: vec![unconfirmed, delivery.clone()], ..Records::default() };
        assert!(check(&mailbox, &records, true).is_empty(), "the first 250 may not have been read");
        let records = Records { delivered: vec![delivery.clone(), delivery.clone()], ..Records::default() };
        let (refetched, _) = after_fetch(false, 2);
        assert!(check(&refetched, &records, true).is_empty(), "the QUIT applied without +OK, and the server sent it again");
        let (not_refetched, _) = after_fetch(false, 1);
        assert_eq!(check(&not_refetched, &records, true).len(), 1, "no refetch at the server: the repeat is the device's");
        let mut wrong = delivery;
        wrong.recipient = "postmaster@home.example".into();
        let records = Records { delivered: vec![wrong], ..Records::default() };
        assert_eq!(check(&mailbox, &records, true).len(), 1, "the wrong recipient");
    }
}
