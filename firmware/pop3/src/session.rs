//! The POP3 client session that fetches the backup MX's mailbox: a sans-I/O state machine in
//! the shape of the SMTP client (`homemx_smtp::client`): the caller feeds server bytes with
//! [`Pop3Session::receive`], sends [`Pop3Session::output`], and acts on the events of
//! [`Pop3Session::poll`].
//!
//! Steps: greeting, CAPA; with [`TlsMode::StartTls`] STLS (discarding anything the server sent
//! after its `+OK`, the client side of CVE-2011-0411), the handshake by the caller, CAPA again;
//! then USER/PASS (AUTH PLAIN when CAPA offers SASL PLAIN but not USER), LIST, UIDL, and the
//! listing as events. Then the caller drives: [`Pop3Session::retrieve`] (RETR, the body
//! streamed dot-unstuffed in chunks), [`Pop3Session::delete`] (DELE), [`Pop3Session::finish`]
//! (QUIT). Commands go one at a time (no pipelining). The body leaves with CRLF line ends
//! only: a bare CR or LF in it becomes CRLF ([`crate::body`]), so fetched mail enters the
//! spool in the form every later hop expects.
//!
//! TLS is never optional: without STLS in the CAPA list (an overwritten `XXXX` is reported as
//! stripping), with STLS refused or the handshake failed, the session raises a
//! [`TlsProblem`] and ends; USER, PASS and AUTH are only ever written inside TLS. An `-ERR`
//! before TLS (greeting, CAPA, STLS) came in clear and may be forged: it ends this run and
//! nothing else (no failure of a session is a lasting verdict; the caller fetches again at
//! the next poll).
//!
//! The password: the session never stores it. On [`Pop3Event::PasswordNeeded`] the caller
//! passes it to [`Pop3Session::send_password`], which writes the PASS (or AUTH PLAIN) line
//! into the output buffer; the buffer is wiped (with `zeroize`) as soon as the caller reports
//! it sent, and on drop. Neither events nor `Debug` output ever show it.

use heapless::{Deque, Vec};
use zeroize::Zeroize;

use crate::body::{BodyDecoder, BodyStep};
use crate::capability::Capabilities;
use crate::listing::{is_valid_uidl, parse_scan_line, parse_uidl_line, ListEntry, ListingSummary, LISTING_MAX};
use crate::status::{parse_status, response_code, ResponseCode, Status};

/// Octets of server responses a session buffers (a response line is at most 512, RFC 2449).
pub const INPUT_BUFFER_SIZE: usize = 1024;
/// Octets of commands a session buffers before the caller must send them.
pub const OUTPUT_BUFFER_SIZE: usize = 512;
/// Longest response line accepted, CRLF included (RFC 2449 4).
const LINE_MAX: usize = 512;
/// Longest user name accepted.
pub const USERNAME_MAX: usize = 128;
/// Longest password accepted.
pub const PASSWORD_MAX: usize = 128;
/// A reasonable reply timeout: two minutes.
pub const DEFAULT_REPLY_TIMEOUT_MS: u64 = 120_000;

/// How TLS is had; there is no plaintext mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// The transport is TLS from the first octet (port 995): the caller handshakes and
    /// verifies the server before creating the session.
    Implicit,
    /// Plain connection (port 110) upgraded with STLS (RFC 2595) before anything else.
    StartTls,
}

/// Settings of the mailbox to fetch.
#[derive(Clone, Copy, Debug)]
pub struct Pop3Config<'a> {
    /// The login name (sent inside TLS only).
    pub username: &'a str,
    /// How TLS is had.
    pub tls: TlsMode,
    /// Messages larger than this (by LIST size) are reported with [`Pop3Event::TooLarge`]
    /// and not retrieved; a body that turns out larger is cut off and aborted.
    pub message_size_max: u64,
    /// How long the server may take for a reply (or, inside a body, between chunks).
    pub reply_timeout_ms: u64,
}

/// Why a configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Empty, longer than [`USERNAME_MAX`], or holding a space or control octet.
    InvalidUsername,
}

/// A TLS problem worth an alert (possible stripping attack).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsProblem {
    /// The CAPA list had no STLS (or CAPA was refused).
    NotOffered,
    /// The CAPA list had an overwritten STLS (e.g. `XXXX`).
    Stripped,
    /// STLS was answered `-ERR`.
    Refused,
    /// The caller reported a failed handshake or certificate check.
    HandshakeFailed,
}

/// Why the server refused the login, from its response code (RFC 2449 8, RFC 3206).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginRefusal {
    /// `[AUTH]`: wrong credentials; retrying will not help.
    Credentials,
    /// `[IN-USE]`: another session holds the mailbox; retry later.
    InUse,
    /// `[LOGIN-DELAY]` or `[SYS/TEMP]`: retry later.
    Temporary,
    /// `[SYS/PERM]`: a permanent server problem.
    Permanent,
    /// No code: could be any of these.
    Unspecified,
}

/// A protocol step, for reporting what the server refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The greeting was `-ERR`.
    Greeting,
    /// LIST.
    List,
    /// UIDL (without unique-ids fetching cannot be duplicate-free).
    Uidl,
    /// QUIT: the server could not remove the deleted messages.
    Quit,
}

/// Why a session failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// TLS could not be had (see the `TlsProblem` event before it).
    TlsUnavailable,
    /// The server refused the login.
    LoginRefused(LoginRefusal),
    /// The server answered `-ERR` at this step.
    Refused(Stage),
    /// The password was empty, too long, or held CR, LF or NUL: it was not sent.
    InvalidPassword,
    /// No reply in time.
    Timeout,
    /// The server's responses were malformed (or too long).
    ProtocolError,
    /// The connection ended before QUIT was answered.
    ConnectionLost,
}

/// The per-message command the server refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageCommand {
    /// RETR.
    Retrieve,
    /// DELE.
    Delete,
}

/// Why a started message must be discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// The body grew past `message_size_max` (the rest was read and dropped; the session
    /// goes on).
    TooLarge,
    /// The session failed during the body (a `Failed` event follows).
    SessionFailed,
}

/// Why a caller request was not carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The session is not waiting for this request now.
    NotReady,
    /// The number is not one of this run's listed messages.
    UnknownMessage,
    /// The message is larger than `message_size_max`.
    TooLarge,
    /// The message was already deleted in this session.
    AlreadyDeleted,
    /// The password cannot be sent (the session fails with `InvalidPassword`).
    InvalidPassword,
}

/// What a session tells its caller. `Close` is always the last event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pop3Event<'a> {
    /// Send the output, run the TLS handshake (verifying the server), then call
    /// [`Pop3Session::tls_established`] or [`Pop3Session::tls_failed`].
    StartTls,
    /// For the log and the alert.
    TlsProblem(TlsProblem),
    /// Plaintext the server sent after its `+OK` to STLS was discarded.
    PlaintextDiscarded {
        /// Octets discarded.
        octets: usize,
    },
    /// Call [`Pop3Session::send_password`] now.
    PasswordNeeded,
    /// A message of this run that may be retrieved.
    Listed(ListEntry<'a>),
    /// A message larger than `message_size_max`: it stays on the server.
    TooLarge(ListEntry<'a>),
    /// The listing is complete; the session waits for `retrieve`, `delete` or `finish`.
    ListingComplete(ListingSummary),
    /// RETR accepted: body chunks follow.
    MessageBegin {
        /// The message number.
        number: u32,
        /// Its LIST size.
        size: u64,
    },
    /// The next chunk of the body, dot-unstuffed, every line end CRLF (a bare CR or LF the
    /// server sent arrives as a CRLF of its own).
    MessageData(&'a [u8]),
    /// The body is complete (commit it); the session waits for the next request.
    MessageEnd {
        /// The message number.
        number: u32,
        /// Body octets delivered.
        octets: u64,
    },
    /// Discard every chunk of this message.
    MessageAborted {
        /// The message number.
        number: u32,
        /// Why.
        reason: AbortReason,
    },
    /// The server answered `-ERR` to RETR or DELE; the session waits for the next request.
    MessageRefused {
        /// The message number.
        number: u32,
        /// The refused command.
        command: MessageCommand,
    },
    /// DELE accepted: the message is marked, and removed only by a `+OK` to QUIT.
    Deleted {
        /// The message number.
        number: u32,
    },
    /// The session failed; a QUIT may still be sent before `Close`.
    Failed(Failure),
    /// Send the output, then close the connection.
    Close {
        /// QUIT was answered `+OK`: the server removed the deleted messages. Otherwise it
        /// rolled them back (or it is unknown: keep their UIDLs as seen).
        deletions_final: bool,
        /// Messages removed from the server (0 unless `deletions_final`).
        deleted: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Capa,
    CapaLines,
    Stls,
    AwaitingTls,
    User,
    AwaitingPassword { auth_plain: bool },
    Pass,
    List,
    ListLines,
    Uidl,
    UidlLines,
    Ready,
    Retrieve(u32),
    Body(u32),
    Delete(u32),
    Quit,
    Closed,
}

/// One listed message of this run.
#[derive(Clone, Copy, Debug)]
struct Slot {
    number: u32,
    /// The LIST size, saturated at 4 GiB (keeps the table at 12 octets a message).
    size: u32,
    has_uidl: bool,
    deleted: bool,
}

/// A listing event found in the input buffer (its UIDL at `uidl_start..uidl_end`).
#[derive(Clone, Copy, Debug)]
struct FoundEntry {
    number: u32,
    size: u64,
    uidl_start: usize,
    uidl_end: usize,
    too_large: bool,
}

/// One POP3 fetch run on one connection.
pub struct Pop3Session<'a> {
    config: &'a Pop3Config<'a>,
    state: State,
    tls_active: bool,
    capabilities: Capabilities,
    slots: Vec<Slot, LISTING_MAX>,
    messages: u32,
    listed: u32,
    listing_truncated: bool,
    deleted: u32,
    body: BodyDecoder,
    body_octets: u64,
    body_discarding: bool,
    timer_start: u64,
    pending: Deque<Pop3Event<'static>, 8>,
    input: [u8; INPUT_BUFFER_SIZE],
    input_start: usize,
    input_end: usize,
    output: [u8; OUTPUT_BUFFER_SIZE],
    output_length: usize,
}

impl core::fmt::Debug for Pop3Session<'_> {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter
            .debug_struct("Pop3Session")
            .field("state", &self.state)
            .field("tls_active", &self.tls_active)
            .field("listed", &self.slots.len())
            .field("deleted", &self.deleted)
            .finish_non_exhaustive()
    }
}

impl Drop for Pop3Session<'_> {
    fn drop(&mut self) {
        self.output.zeroize();
    }
}

/// Writes `value` in decimal into `buffer`; returns the digits.
fn decimal(mut value: u32, buffer: &mut [u8; 10]) -> &[u8] {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buffer[start..];
        }
    }
}

/// Standard base64 of one to three octets into four.
fn base64_group(group: &[u8], out: &mut [u8; 4]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let byte = |index: usize| u32::from(group.get(index).copied().unwrap_or(0));
    let value = byte(0) << 16 | byte(1) << 8 | byte(2);
    for (index, slot) in out.iter_mut().enumerate() {
        *slot = if index <= group.len() { ALPHABET[(value >> (18 - 6 * index) & 63) as usize] } else { b'=' };
    }
}

impl<'a> Pop3Session<'a> {
    /// A fetch run on a fresh connection (for [`TlsMode::Implicit`]: after the handshake).
    /// The session waits for the server's greeting.
    pub fn new(config: &'a Pop3Config<'a>, now_ms: u64) -> Result<Pop3Session<'a>, ConfigError> {
        let username = config.username.as_bytes();
        if username.is_empty() || username.len() > USERNAME_MAX || username.iter().any(|&b| b <= b' ' || b == 0x7F) {
            return Err(ConfigError::InvalidUsername);
        }
        Ok(Pop3Session {
            config,
            state: State::Greeting,
            tls_active: config.tls == TlsMode::Implicit,
            capabilities: Capabilities::default(),
            slots: Vec::new(),
            messages: 0,
            listed: 0,
            listing_truncated: false,
            deleted: 0,
            body: BodyDecoder::new(),
            body_octets: 0,
            body_discarding: false,
            timer_start: now_ms,
            pending: Deque::new(),
            input: [0; INPUT_BUFFER_SIZE],
            input_start: 0,
            input_end: 0,
            output: [0; OUTPUT_BUFFER_SIZE],
            output_length: 0,
        })
    }

    /// Bytes to send to the server now.
    pub fn output(&self) -> &[u8] {
        &self.output[..self.output_length]
    }

    /// The first `octets` of [`Self::output`] were sent. Sent bytes are wiped (they may have
    /// held the password).
    pub fn output_sent(&mut self, octets: usize) {
        let octets = octets.min(self.output_length);
        self.output.copy_within(octets..self.output_length, 0);
        self.output[self.output_length - octets..].zeroize();
        self.output_length -= octets;
    }

    /// Copies server bytes in; returns how many were taken (poll to make room when fewer).
    /// While waiting for the TLS handshake and after the end everything is dropped.
    pub fn receive(&mut self, data: &[u8], now_ms: u64) -> usize {
        if matches!(self.state, State::AwaitingTls | State::Closed) {
            return data.len();
        }
        if self.input_start > 0 {
            self.input.copy_within(self.input_start..self.input_end, 0);
            self.input_end -= self.input_start;
            self.input_start = 0;
        }
        let octets = data.len().min(INPUT_BUFFER_SIZE - self.input_end);
        self.input[self.input_end..self.input_end + octets].copy_from_slice(&data[..octets]);
        self.input_end += octets;
        if octets > 0 && matches!(self.state, State::Body(_)) {
            // Inside a body the timeout runs between chunks, not over the whole message.
            self.timer_start = now_ms;
        }
        octets
    }

    /// The millisecond time by which the server must have answered, when waiting for it.
    pub fn deadline(&self) -> Option<u64> {
        match self.state {
            State::AwaitingTls | State::AwaitingPassword { .. } | State::Ready | State::Closed => None,
            _ => Some(self.timer_start.saturating_add(self.config.reply_timeout_ms)),
        }
    }

    /// Whether the session is over (`Close` was emitted).
    pub fn is_finished(&self) -> bool {
        self.state == State::Closed && self.pending.is_empty()
    }

    /// Whether the session waits for [`Self::retrieve`], [`Self::delete`] or
    /// [`Self::finish`].
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready && self.pending.is_empty()
    }

    /// Whether the session runs inside TLS.
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// After `StartTls`: the handshake succeeded and the server was verified.
    pub fn tls_established(&mut self, now_ms: u64) {
        if self.state == State::AwaitingTls {
            self.input_start = 0;
            self.input_end = 0;
            self.tls_active = true;
            self.capabilities = Capabilities::default();
            self.timer_start = now_ms;
            self.command(&[b"CAPA\r\n"], State::Capa);
        }
    }

    /// After `StartTls`: the handshake or the certificate check failed. The session ends
    /// without QUIT (the stream is unusable).
    pub fn tls_failed(&mut self) {
        if self.state == State::AwaitingTls {
            let _ = self.pending.push_back(Pop3Event::TlsProblem(TlsProblem::HandshakeFailed));
            self.fail(Failure::TlsUnavailable, false);
        }
    }

    /// The connection ended. Before a `+OK` to QUIT this means nothing was deleted.
    pub fn connection_closed(&mut self) {
        self.fail(Failure::ConnectionLost, false);
    }

    /// After `PasswordNeeded`: writes the PASS (or AUTH PLAIN) line with `password`. The
    /// session keeps no copy; the output buffer is wiped once sent.
    pub fn send_password(&mut self, password: &[u8], now_ms: u64) -> Result<(), RequestError> {
        let State::AwaitingPassword { auth_plain } = self.state else { return Err(RequestError::NotReady) };
        if !self.tls_active {
            self.fail(Failure::TlsUnavailable, false);
            return Err(RequestError::NotReady);
        }
        if password.is_empty()
            || password.len() > PASSWORD_MAX
            || password.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
        {
            self.fail(Failure::InvalidPassword, true);
            return Err(RequestError::InvalidPassword);
        }
        self.timer_start = now_ms;
        if auth_plain {
            self.command_base64(b"AUTH PLAIN ", &[b"\0", self.config.username.as_bytes(), b"\0", password]);
        } else {
            self.command(&[b"PASS ", password, b"\r\n"], State::Pass);
        }
        Ok(())
    }

    fn slot_index(&self, number: u32) -> Option<usize> {
        self.slots.iter().position(|slot| slot.number == number && slot.has_uidl)
    }

    /// When ready: RETR the listed message `number`; its body follows as `MessageBegin`,
    /// `MessageData`…, `MessageEnd` (or `MessageRefused` / `MessageAborted`).
    pub fn retrieve(&mut self, number: u32, now_ms: u64) -> Result<(), RequestError> {
        if !self.is_ready() {
            return Err(RequestError::NotReady);
        }
        let index = self.slot_index(number).ok_or(RequestError::UnknownMessage)?;
        let slot = self.slots[index];
        if slot.deleted {
            return Err(RequestError::AlreadyDeleted);
        }
        if u64::from(slot.size) > self.config.message_size_max {
            return Err(RequestError::TooLarge);
        }
        self.timer_start = now_ms;
        let mut digits = [0u8; 10];
        self.command(&[b"RETR ", decimal(number, &mut digits), b"\r\n"], State::Retrieve(number));
        Ok(())
    }

    /// When ready: DELE the listed message `number` (after its UIDL is committed as seen).
    /// The deletion becomes final only with a `+OK` to QUIT.
    pub fn delete(&mut self, number: u32, now_ms: u64) -> Result<(), RequestError> {
        if !self.is_ready() {
            return Err(RequestError::NotReady);
        }
        let index = self.slot_index(number).ok_or(RequestError::UnknownMessage)?;
        if self.slots[index].deleted {
            return Err(RequestError::AlreadyDeleted);
        }
        self.timer_start = now_ms;
        let mut digits = [0u8; 10];
        self.command(&[b"DELE ", decimal(number, &mut digits), b"\r\n"], State::Delete(number));
        Ok(())
    }

    /// When ready: QUIT; `Close` says whether the deletions became final.
    pub fn finish(&mut self, now_ms: u64) -> Result<(), RequestError> {
        if !self.is_ready() {
            return Err(RequestError::NotReady);
        }
        self.timer_start = now_ms;
        self.command(&[b"QUIT\r\n"], State::Quit);
        Ok(())
    }

    /// Advances the session: reads buffered responses, sends the next command, reports.
    /// `None`: send the output, then wait for server bytes (until [`Self::deadline`]) or, when
    /// [`Self::is_ready`], make a request.
    pub fn poll(&mut self, now_ms: u64) -> Option<Pop3Event<'_>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            match self.state {
                State::Closed | State::AwaitingTls => return None,
                State::AwaitingPassword { .. } | State::Ready => {
                    if self.input_start == self.input_end {
                        return None;
                    }
                    // The server spoke when nothing was asked: taking it as the reply to the
                    // next command could turn garbage into a message.
                    self.fail(Failure::ProtocolError, false);
                    continue;
                }
                State::Body(number) => {
                    let window = &self.input[self.input_start..self.input_end];
                    match self.body.step(window) {
                        BodyStep::Data { skip, length } => {
                            let start = self.input_start + skip;
                            self.input_start = start + length;
                            self.timer_start = now_ms;
                            if length > 0 && !self.body_discarding {
                                self.body_octets = self.body_octets.saturating_add(length as u64);
                                if self.body_octets > self.config.message_size_max {
                                    self.body_discarding = true;
                                } else {
                                    return Some(Pop3Event::MessageData(&self.input[start..start + length]));
                                }
                            }
                            continue;
                        }
                        BodyStep::BareLineEnd => {
                            // A bare CR or LF enters the body as CRLF (see `body`).
                            self.input_start += 1;
                            self.timer_start = now_ms;
                            if !self.body_discarding {
                                self.body_octets = self.body_octets.saturating_add(2);
                                if self.body_octets > self.config.message_size_max {
                                    self.body_discarding = true;
                                } else {
                                    return Some(Pop3Event::MessageData(b"\r\n"));
                                }
                            }
                            continue;
                        }
                        BodyStep::End { consumed } => {
                            self.input_start += consumed;
                            self.timer_start = now_ms;
                            let event = if self.body_discarding {
                                Pop3Event::MessageAborted { number, reason: AbortReason::TooLarge }
                            } else {
                                Pop3Event::MessageEnd { number, octets: self.body_octets }
                            };
                            let _ = self.pending.push_back(event);
                            self.state = State::Ready;
                            continue;
                        }
                        BodyStep::NeedMore => {}
                    }
                }
                _ => {
                    let window = &self.input[self.input_start..self.input_end];
                    match window.windows(2).position(|pair| pair == b"\r\n") {
                        Some(length) if length + 2 <= LINE_MAX => {
                            let start = self.input_start;
                            self.input_start += length + 2;
                            self.timer_start = now_ms;
                            if let Some(found) = self.line(start, start + length) {
                                let uidl = &self.input[found.uidl_start..found.uidl_end];
                                let entry = ListEntry {
                                    number: found.number,
                                    size: found.size,
                                    uidl: core::str::from_utf8(uidl).unwrap_or(""),
                                };
                                return Some(if found.too_large {
                                    Pop3Event::TooLarge(entry)
                                } else {
                                    Pop3Event::Listed(entry)
                                });
                            }
                            continue;
                        }
                        Some(_) => {
                            self.fail(Failure::ProtocolError, false);
                            continue;
                        }
                        None if window.len() >= LINE_MAX => {
                            self.fail(Failure::ProtocolError, false);
                            continue;
                        }
                        None => {}
                    }
                }
            }
            if self.deadline().is_some_and(|deadline| now_ms >= deadline) {
                self.fail(Failure::Timeout, false);
                continue;
            }
            return None;
        }
    }

    /// Handles one response line `input[start..end]` (CRLF removed); returns a listing entry
    /// to report, if the line was one.
    fn line(&mut self, start: usize, end: usize) -> Option<FoundEntry> {
        let line = &self.input[start..end];
        match self.state {
            State::CapaLines | State::ListLines | State::UidlLines => {
                if line == b"." {
                    self.multiline_end();
                    return None;
                }
                // Dot-unstuffing (RFC 1939 3).
                let skip = usize::from(line.first() == Some(&b'.'));
                return self.multiline_line(start + skip, end);
            }
            _ => {}
        }
        let Some((status, text)) = parse_status(line) else {
            self.fail(Failure::ProtocolError, false);
            return None;
        };
        let ok = status == Status::Ok;
        let code = response_code(text);
        match self.state {
            State::Greeting if ok => self.command(&[b"CAPA\r\n"], State::Capa),
            State::Greeting => self.fail(Failure::Refused(Stage::Greeting), false),
            State::Capa if ok => {
                self.capabilities = Capabilities::default();
                self.state = State::CapaLines;
            }
            State::Capa => self.capabilities_known(false),
            State::Stls if ok => {
                // Client side of CVE-2011-0411: nothing after the +OK is a response.
                let discarded = self.input_end - self.input_start;
                self.input_start = 0;
                self.input_end = 0;
                if discarded > 0 {
                    let _ = self.pending.push_back(Pop3Event::PlaintextDiscarded { octets: discarded });
                }
                self.state = State::AwaitingTls;
                let _ = self.pending.push_back(Pop3Event::StartTls);
            }
            State::Stls => {
                let _ = self.pending.push_back(Pop3Event::TlsProblem(TlsProblem::Refused));
                self.fail(Failure::TlsUnavailable, true);
            }
            State::User if ok => {
                self.state = State::AwaitingPassword { auth_plain: false };
                let _ = self.pending.push_back(Pop3Event::PasswordNeeded);
            }
            State::User | State::Pass if !ok => {
                let refusal = match code {
                    ResponseCode::Auth => LoginRefusal::Credentials,
                    ResponseCode::InUse => LoginRefusal::InUse,
                    ResponseCode::LoginDelay | ResponseCode::SysTemp => LoginRefusal::Temporary,
                    ResponseCode::SysPerm => LoginRefusal::Permanent,
                    ResponseCode::None => LoginRefusal::Unspecified,
                };
                self.fail(Failure::LoginRefused(refusal), true);
            }
            State::Pass => self.command(&[b"LIST\r\n"], State::List),
            State::List if ok => {
                self.slots.clear();
                self.messages = 0;
                self.listing_truncated = false;
                self.state = State::ListLines;
            }
            State::List => self.fail(Failure::Refused(Stage::List), true),
            State::Uidl if ok => {
                self.listed = 0;
                self.state = State::UidlLines;
            }
            State::Uidl => self.fail(Failure::Refused(Stage::Uidl), true),
            State::Retrieve(number) if ok => {
                let size = self.slots.iter().find(|slot| slot.number == number).map_or(0, |slot| u64::from(slot.size));
                self.body = BodyDecoder::new();
                self.body_octets = 0;
                self.body_discarding = false;
                self.state = State::Body(number);
                let _ = self.pending.push_back(Pop3Event::MessageBegin { number, size });
            }
            State::Retrieve(number) => {
                self.state = State::Ready;
                let command = MessageCommand::Retrieve;
                let _ = self.pending.push_back(Pop3Event::MessageRefused { number, command });
            }
            State::Delete(number) => {
                self.state = State::Ready;
                if ok {
                    if let Some(slot) = self.slots.iter_mut().find(|slot| slot.number == number) {
                        slot.deleted = true;
                    }
                    self.deleted += 1;
                    let _ = self.pending.push_back(Pop3Event::Deleted { number });
                } else {
                    let command = MessageCommand::Delete;
                    let _ = self.pending.push_back(Pop3Event::MessageRefused { number, command });
                }
            }
            State::Quit => {
                self.state = State::Closed;
                if !ok {
                    let _ = self.pending.push_back(Pop3Event::Failed(Failure::Refused(Stage::Quit)));
                }
                let deleted = if ok { self.deleted } else { 0 };
                let _ = self.pending.push_back(Pop3Event::Close { deletions_final: ok, deleted });
            }
            // A response nobody asked for.
            State::CapaLines
            | State::ListLines
            | State::UidlLines
            | State::AwaitingTls
            | State::AwaitingPassword { .. }
            | State::Ready
            | State::Body(_)
            | State::User
            | State::Closed => self.fail(Failure::ProtocolError, false),
        }
        None
    }

    /// One line of a multi-line response (unstuffed, at `input[start..end]`).
    fn multiline_line(&mut self, start: usize, end: usize) -> Option<FoundEntry> {
        let line = &self.input[start..end];
        match self.state {
            State::CapaLines => self.capabilities.add_line(line),
            State::ListLines => {
                let Some((number, size)) = parse_scan_line(line) else {
                    self.fail(Failure::ProtocolError, false);
                    return None;
                };
                self.messages = self.messages.saturating_add(1);
                if self.slots.iter().any(|slot| slot.number == number) {
                    return None;
                }
                if self
                    .slots
                    .push(Slot {
                        number,
                        size: u32::try_from(size).unwrap_or(u32::MAX),
                        has_uidl: false,
                        deleted: false,
                    })
                    .is_err()
                {
                    self.listing_truncated = true;
                }
            }
            State::UidlLines => {
                let Some((number, uidl)) = parse_uidl_line(line) else {
                    self.fail(Failure::ProtocolError, false);
                    return None;
                };
                let uidl_start = start + (uidl.as_ptr() as usize - line.as_ptr() as usize);
                let uidl_end = uidl_start + uidl.len();
                let valid = is_valid_uidl(uidl);
                let Some(slot) = self.slots.iter_mut().find(|slot| slot.number == number) else {
                    // A message beyond this run's batch (or not in LIST).
                    self.listing_truncated = true;
                    return None;
                };
                if slot.has_uidl || !valid {
                    // A repeated line, or a unique-id that cannot be remembered: the message
                    // is not offered (and the listing is not complete).
                    self.listing_truncated |= !valid;
                    return None;
                }
                slot.has_uidl = true;
                self.listed += 1;
                let too_large = u64::from(slot.size) > self.config.message_size_max;
                return Some(FoundEntry { number, size: u64::from(slot.size), uidl_start, uidl_end, too_large });
            }
            _ => {}
        }
        None
    }

    /// The end of a multi-line response.
    fn multiline_end(&mut self) {
        match self.state {
            State::CapaLines => self.capabilities_known(true),
            State::ListLines => self.command(&[b"UIDL\r\n"], State::Uidl),
            State::UidlLines => {
                self.state = State::Ready;
                let messages = self.messages;
                let complete = !self.listing_truncated && self.listed == messages;
                let summary = ListingSummary { messages, listed: self.listed, complete };
                let _ = self.pending.push_back(Pop3Event::ListingComplete(summary));
            }
            _ => {}
        }
    }

    /// After CAPA (answered or refused): STLS, or the login once inside TLS.
    fn capabilities_known(&mut self, answered: bool) {
        if !self.tls_active {
            if answered && self.capabilities.stls {
                self.command(&[b"STLS\r\n"], State::Stls);
            } else {
                let problem =
                    if self.capabilities.stripped_stls { TlsProblem::Stripped } else { TlsProblem::NotOffered };
                let _ = self.pending.push_back(Pop3Event::TlsProblem(problem));
                self.fail(Failure::TlsUnavailable, true);
            }
            return;
        }
        if self.capabilities.sasl_plain && !self.capabilities.user {
            self.state = State::AwaitingPassword { auth_plain: true };
            let _ = self.pending.push_back(Pop3Event::PasswordNeeded);
        } else {
            self.command(&[b"USER ", self.config.username.as_bytes(), b"\r\n"], State::User);
        }
    }

    /// Writes a command made of `parts` and moves to `state`.
    fn command(&mut self, parts: &[&[u8]], state: State) {
        let length: usize = parts.iter().map(|part| part.len()).sum();
        if length > OUTPUT_BUFFER_SIZE - self.output_length {
            return self.fail(Failure::ProtocolError, false);
        }
        for part in parts {
            self.output[self.output_length..self.output_length + part.len()].copy_from_slice(part);
            self.output_length += part.len();
        }
        self.state = state;
    }

    /// Writes `prefix` + base64(concatenation of `parts`) + CRLF (AUTH PLAIN, RFC 5034) and
    /// moves to `Pass` (the same replies follow).
    fn command_base64(&mut self, prefix: &[u8], parts: &[&[u8]]) {
        let total: usize = parts.iter().map(|part| part.len()).sum();
        let needed = prefix.len() + total.div_ceil(3) * 4 + 2;
        if needed > OUTPUT_BUFFER_SIZE - self.output_length {
            return self.fail(Failure::InvalidPassword, true);
        }
        let mut at = self.output_length;
        self.output[at..at + prefix.len()].copy_from_slice(prefix);
        at += prefix.len();
        let mut group = [0u8; 3];
        let mut filled = 0;
        let mut encoded = [0u8; 4];
        for &byte in parts.iter().flat_map(|part| part.iter()) {
            group[filled] = byte;
            filled += 1;
            if filled == 3 {
                base64_group(&group, &mut encoded);
                self.output[at..at + 4].copy_from_slice(&encoded);
                at += 4;
                filled = 0;
            }
        }
        if filled > 0 {
            base64_group(&group[..filled], &mut encoded);
            self.output[at..at + 4].copy_from_slice(&encoded);
            at += 4;
        }
        group.zeroize();
        encoded.zeroize();
        self.output[at..at + 2].copy_from_slice(b"\r\n");
        self.output_length = at + 2;
        self.state = State::Pass;
    }

    /// Ends the session: aborts an open message, reports `failure`, then QUITs (when `quit`
    /// and the stream is in step) or closes.
    fn fail(&mut self, failure: Failure, quit: bool) {
        if self.state == State::Closed {
            return;
        }
        if let State::Body(number) = self.state {
            let _ = self.pending.push_back(Pop3Event::MessageAborted { number, reason: AbortReason::SessionFailed });
        }
        let _ = self.pending.push_back(Pop3Event::Failed(failure));
        self.input_start = self.input_end;
        if quit && self.state != State::AwaitingTls {
            self.command(&[b"QUIT\r\n"], State::Quit);
        } else {
            self.state = State::Closed;
            let _ = self.pending.push_back(Pop3Event::Close { deletions_final: false, deleted: 0 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_numbers() {
        let mut buffer = [0u8; 10];
        assert_eq!(decimal(0, &mut buffer), b"0");
        assert_eq!(decimal(7, &mut buffer), b"7");
        assert_eq!(decimal(1234, &mut buffer), b"1234");
        assert_eq!(decimal(u32::MAX, &mut buffer), b"4294967295");
    }

    #[test]
    fn base64_groups() {
        let mut out = [0u8; 4];
        for (input, expected) in [(&b"f"[..], b"Zg=="), (b"fo", b"Zm8="), (b"foo", b"Zm9v"), (b"\0u\0", b"AHUA")] {
            base64_group(input, &mut out);
            assert_eq!(&out, expected);
        }
    }
}
