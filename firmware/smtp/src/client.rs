//! The SMTP/LMTP client session for delivery: a sans-I/O state machine that sends one message
//! to one server and classifies every recipient as delivered, deferred or bounced.
//!
//! Steps: greeting, EHLO (LHLO for LMTP), STARTTLS (discarding anything the server sent after
//! its `220`, the client side of CVE-2011-0411), EHLO again, AUTH PLAIN or LOGIN (only inside
//! TLS, never in clear), MAIL with SIZE and BODY, one RCPT per recipient, DATA with
//! dot-stuffing, the final reply (one for SMTP, one per accepted recipient for LMTP), QUIT.
//! Commands are sent one at a time (no pipelining: simpler, and delivery volume is tiny).
//!
//! TLS policy: with [`TlsRequirement::Required`] a missing STARTTLS, a STARTTLS overwritten in
//! the capability list (`XXXXXXXA`, a sign of a stripping middlebox), a refused STARTTLS or a
//! failed handshake defers every recipient (4xx, never a bounce, never plaintext) and raises a
//! [`TlsProblem`] event for the alert. So does a permanent (5xx) reply before TLS is up (the
//! greeting, the first EHLO, STARTTLS): anyone on the path can forge it, so it is never taken
//! as the server's verdict on the mail and never produces a non-delivery report.

use core::fmt::Write;

use heapless::Deque;

use crate::address::parse_mailbox;
use crate::clock::Now;
use crate::data::DotStuffer;
use crate::received::SliceWriter;

/// Most recipients one delivery may carry.
pub const CLIENT_RECIPIENTS_MAX: usize = 128;
/// Octets of server replies a client session buffers (a reply line is at most 512).
pub const CLIENT_INPUT_BUFFER_SIZE: usize = 1024;
/// Octets of commands and body a client session buffers before the caller must send them.
pub const CLIENT_OUTPUT_BUFFER_SIZE: usize = 1024;
/// Longest reply line accepted, CRLF included (RFC 5321 4.5.3.1.5).
const REPLY_LINE_MAX: usize = 512;

/// The protocol spoken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientProtocol {
    /// SMTP (RFC 5321): EHLO, one reply after DATA.
    Smtp,
    /// LMTP (RFC 2033): LHLO, one reply per accepted recipient after DATA.
    Lmtp,
}

/// Whether TLS is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsRequirement {
    /// TLS or nothing: without it every recipient is deferred (the smarthost).
    Required,
    /// STARTTLS when offered, plaintext otherwise (a LAN mailbox host).
    Opportunistic,
    /// Never STARTTLS (a LAN LMTP socket).
    Disabled,
}

/// Login data for AUTH PLAIN / LOGIN; only ever sent inside TLS.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The user name.
    pub username: &'a str,
    /// The password.
    pub password: &'a str,
}

impl core::fmt::Debug for Credentials<'_> {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

/// Settings of a delivery target.
#[derive(Clone, Copy, Debug)]
pub struct ClientConfig<'a> {
    /// This device's name for EHLO/LHLO.
    pub hostname: &'a str,
    /// SMTP or LMTP.
    pub protocol: ClientProtocol,
    /// TLS policy.
    pub tls: TlsRequirement,
    /// AUTH credentials, if the server needs them.
    pub credentials: Option<Credentials<'a>>,
}

/// The message to deliver.
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a> {
    /// The sender mailbox, or `""` for the null reverse path.
    pub sender: &'a str,
    /// The recipient mailboxes.
    pub recipients: &'a [&'a str],
    /// The body size in octets, sent as `SIZE=` when the server offers SIZE.
    pub size: Option<u64>,
    /// Whether the body has 8-bit octets (`BODY=8BITMIME` when offered).
    pub eight_bit: bool,
}

/// Why an envelope cannot be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeError {
    /// No recipients, or more than [`CLIENT_RECIPIENTS_MAX`].
    RecipientCount,
    /// The sender is not a valid mailbox.
    InvalidSender,
    /// The recipient at this index is not a valid mailbox.
    InvalidRecipient(usize),
}

/// How a recipient's delivery ended in this attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the server (2xx): remove from the queue.
    Delivered,
    /// Temporary failure (4xx, TLS trouble, lost connection): retry later.
    Deferred,
    /// Permanent failure (5xx): send a non-delivery report to the (local) sender.
    Bounced,
}

/// What decided a recipient's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultReason {
    /// The server's reply (code and enhanced code in the result).
    Reply,
    /// TLS was required but could not be had (see the `TlsProblem` event), including a
    /// permanent refusal before TLS was up (the code is kept, the outcome is `Deferred`).
    TlsUnavailable,
    /// Credentials are configured but TLS is not active: they were not sent.
    CredentialsNeedTls,
    /// The server offers AUTH but neither PLAIN nor LOGIN.
    AuthMechanismUnsupported,
    /// The server refused the credentials.
    AuthFailed,
    /// The message is larger than the server's SIZE.
    MessageTooBig,
    /// The server's replies were malformed.
    ProtocolError,
    /// No reply in time.
    Timeout,
    /// The connection ended before the outcome was known.
    ConnectionLost,
}

/// An enhanced status code `class.subject.detail` (RFC 3463).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnhancedCode {
    /// 2, 4 or 5.
    pub class: u8,
    /// The subject (0–999).
    pub subject: u16,
    /// The detail (0–999).
    pub detail: u16,
}

/// The outcome of one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecipientResult {
    /// Index into `Envelope::recipients`.
    pub index: usize,
    /// Delivered, deferred or bounced.
    pub outcome: Outcome,
    /// The server's reply code (0 if no reply decided it).
    pub code: u16,
    /// The enhanced code of that reply, if it had one.
    pub enhanced: Option<EnhancedCode>,
    /// What decided it.
    pub reason: ResultReason,
}

/// A TLS problem worth an alert (possible stripping attack).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsProblem {
    /// The server did not offer STARTTLS.
    NotOffered,
    /// The capability list had an overwritten STARTTLS (e.g. `XXXXXXXA`).
    Stripped,
    /// STARTTLS was answered with this code instead of 220.
    Refused(u16),
    /// The greeting or the EHLO before TLS was answered with this permanent (5xx) code: it
    /// may be forged by whoever sits on the path, so the mail waits instead of bouncing.
    RefusedBeforeTls(u16),
    /// The caller reported a failed handshake or certificate check.
    HandshakeFailed,
}

/// What a client session tells its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// Send the output, run the TLS handshake (verifying the server), then call
    /// [`ClientSession::tls_established`] or [`ClientSession::tls_failed`].
    StartTls,
    /// For the log and the alert.
    TlsProblem(TlsProblem),
    /// Plaintext the server sent after its `220` to STARTTLS was discarded.
    PlaintextDiscarded {
        /// Octets discarded.
        octets: usize,
    },
    /// Feed the message body with [`ClientSession::send_body`], then [`ClientSession::end_body`].
    SendBody,
    /// A recipient's outcome is final for this attempt.
    RecipientResult(RecipientResult),
    /// The output buffer is full: send it.
    OutputFull,
    /// Send the output, then close the connection; every recipient has its result.
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Hello,
    HeloFallback,
    StartTls,
    AwaitingTls,
    AuthPlain,
    AuthLoginUser,
    AuthLoginPassword,
    Mail,
    Recipient(usize),
    Data,
    Body,
    DataReply,
    Quit,
    Finished,
}

#[derive(Clone, Copy, Debug, Default)]
struct Capabilities {
    starttls: bool,
    stripped_starttls: bool,
    size_offered: bool,
    size_limit: Option<u64>,
    eight_bit_mime: bool,
    auth_offered: bool,
    auth_plain: bool,
    auth_login: bool,
}

/// A bulk report in progress: every recipient in `remaining` gets this result.
#[derive(Clone, Copy, Debug)]
struct BulkReport {
    outcome: Outcome,
    code: u16,
    enhanced: Option<EnhancedCode>,
    reason: ResultReason,
}

/// One SMTP/LMTP delivery attempt.
pub struct ClientSession<'a> {
    config: &'a ClientConfig<'a>,
    envelope: Envelope<'a>,
    state: State,
    capabilities: Capabilities,
    tls_active: bool,
    starttls_declined: bool,
    authenticated: bool,
    accepted: u128,
    unreported: u128,
    bulk: Option<BulkReport>,
    reply_line: usize,
    reply_code: u16,
    timer_start: u64,
    stuffer: DotStuffer,
    pending: Deque<ClientEvent, 4>,
    input: [u8; CLIENT_INPUT_BUFFER_SIZE],
    input_start: usize,
    input_end: usize,
    output: [u8; CLIENT_OUTPUT_BUFFER_SIZE],
    output_length: usize,
}

/// Outcome class of a reply code; `552` to RCPT counts as temporary (RFC 5321 4.5.3.1.10).
fn classify(code: u16) -> Outcome {
    match code {
        200..=399 => Outcome::Delivered,
        400..=499 => Outcome::Deferred,
        _ => Outcome::Bounced,
    }
}

/// Whether an EHLO keyword looks like a STARTTLS overwritten by a middlebox (`XXXXXXXA`).
pub fn looks_like_stripped_starttls(keyword: &[u8]) -> bool {
    keyword.len() == 8
        && !keyword.eq_ignore_ascii_case(b"STARTTLS")
        && keyword.iter().filter(|&&b| b == b'X' || b == b'x' || b == b'*').count() >= 6
}

/// Standard base64 with padding into `output`; returns the length written.
pub fn base64_encode(input: &[u8], output: &mut [u8]) -> Option<usize> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let length = input.len().div_ceil(3) * 4;
    let output = output.get_mut(..length)?;
    for (chunk, out) in input.chunks(3).zip(output.chunks_mut(4)) {
        let bytes = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let value = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
        for (index, slot) in out.iter_mut().enumerate() {
            *slot = if index <= chunk.len() { ALPHABET[(value >> (18 - 6 * index) & 63) as usize] } else { b'=' };
        }
    }
    Some(length)
}

/// Parses `d.ddd.ddd ` at the start of a reply text.
fn parse_enhanced(text: &[u8]) -> Option<EnhancedCode> {
    let end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
    let text = core::str::from_utf8(&text[..end]).ok()?;
    let mut parts = text.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
        return None;
    }
    Some(EnhancedCode { class, subject, detail })
}

impl<'a> ClientSession<'a> {
    /// A delivery attempt on a fresh connection (`implicit_tls`: the transport is TLS from the
    /// start, port 465). The session waits for the server's greeting.
    pub fn new(
        config: &'a ClientConfig<'a>,
        envelope: Envelope<'a>,
        implicit_tls: bool,
        now: Now,
    ) -> Result<ClientSession<'a>, EnvelopeError> {
        let count = envelope.recipients.len();
        if count == 0 || count > CLIENT_RECIPIENTS_MAX {
            return Err(EnvelopeError::RecipientCount);
        }
        if !envelope.sender.is_empty() && parse_mailbox(envelope.sender).is_err() {
            return Err(EnvelopeError::InvalidSender);
        }
        for (index, recipient) in envelope.recipients.iter().enumerate() {
            if parse_mailbox(recipient).is_err() {
                return Err(EnvelopeError::InvalidRecipient(index));
            }
        }
        Ok(ClientSession {
            config,
            envelope,
            state: State::Greeting,
            capabilities: Capabilities::default(),
            tls_active: implicit_tls,
            starttls_declined: false,
            authenticated: false,
            accepted: 0,
            unreported: if count == 128 { u128::MAX } else { (1u128 << count) - 1 },
            bulk: None,
            reply_line: 0,
            reply_code: 0,
            timer_start: now.monotonic_milliseconds,
            stuffer: DotStuffer::new(),
            pending: Deque::new(),
            input: [0; CLIENT_INPUT_BUFFER_SIZE],
            input_start: 0,
            input_end: 0,
            output: [0; CLIENT_OUTPUT_BUFFER_SIZE],
            output_length: 0,
        })
    }

    /// Bytes to send to the server now.
    pub fn output(&self) -> &[u8] {
        &self.output[..self.output_length]
    }

    /// The first `octets` of [`Self::output`] were sent. Sent bytes are wiped (they may
    /// have held credentials).
    pub fn output_sent(&mut self, octets: usize) {
        let octets = octets.min(self.output_length);
        self.output.copy_within(octets..self.output_length, 0);
        self.output[self.output_length - octets..self.output_length].fill(0);
        self.output_length -= octets;
    }

    /// Copies server bytes in; returns how many were taken.
    pub fn receive(&mut self, data: &[u8], now: Now) -> usize {
        if matches!(self.state, State::AwaitingTls | State::Finished) {
            return data.len();
        }
        if self.input_start > 0 {
            self.input.copy_within(self.input_start..self.input_end, 0);
            self.input_end -= self.input_start;
            self.input_start = 0;
        }
        let octets = data.len().min(CLIENT_INPUT_BUFFER_SIZE - self.input_end);
        self.input[self.input_end..self.input_end + octets].copy_from_slice(&data[..octets]);
        self.input_end += octets;
        let _ = now;
        octets
    }

    /// The monotonic millisecond time by which the server must answer (RFC 5321 4.5.3.2:
    /// 5 minutes, 2 for the DATA reply, 10 for the reply after the end of data).
    pub fn deadline(&self) -> Option<u64> {
        let timeout = match self.state {
            State::AwaitingTls | State::Body | State::Finished => return None,
            State::Data => 120_000,
            State::DataReply => 600_000,
            _ => 300_000,
        };
        Some(self.timer_start.saturating_add(timeout))
    }

    /// Whether every recipient has its result and the session is over.
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// Whether the session runs inside TLS.
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// After `StartTls`: the handshake succeeded and the server was verified.
    pub fn tls_established(&mut self, now: Now) {
        if self.state == State::AwaitingTls {
            self.input_start = 0;
            self.input_end = 0;
            self.tls_active = true;
            self.capabilities = Capabilities::default();
            self.timer_start = now.monotonic_milliseconds;
            self.command(State::Hello, format_args!("{} {}\r\n", self.hello_verb(), self.config.hostname));
        }
    }

    /// After `StartTls`: the handshake or the certificate check failed. Every recipient is
    /// deferred and the connection must be closed (no QUIT: the stream is unusable).
    pub fn tls_failed(&mut self) {
        if self.state == State::AwaitingTls {
            let _ = self.pending.push_back(ClientEvent::TlsProblem(TlsProblem::HandshakeFailed));
            self.fail_all(Outcome::Deferred, 0, None, ResultReason::TlsUnavailable, false);
        }
    }

    /// The connection ended: every recipient without a result is deferred.
    pub fn connection_closed(&mut self) {
        if self.state != State::Finished {
            let reason = if self.state == State::Quit { ResultReason::Reply } else { ResultReason::ConnectionLost };
            self.fail_all(Outcome::Deferred, 0, None, reason, false);
        }
    }

    /// In `SendBody`: stuffs as much of `body` as fits into the output; returns the octets
    /// taken (0 when the output must be sent first).
    pub fn send_body(&mut self, body: &[u8]) -> usize {
        if self.state != State::Body {
            return 0;
        }
        let (used, written) = self.stuffer.encode(body, &mut self.output[self.output_length..]);
        self.output_length += written;
        used
    }

    /// In `SendBody`: the body is complete; sends the end of data. Returns false when the
    /// output has no room for it yet (send the output and call again).
    pub fn end_body(&mut self, now: Now) -> bool {
        if self.state != State::Body {
            return false;
        }
        let terminator = self.stuffer.terminator();
        if CLIENT_OUTPUT_BUFFER_SIZE - self.output_length < terminator.len() {
            return false;
        }
        self.output[self.output_length..self.output_length + terminator.len()].copy_from_slice(terminator);
        self.output_length += terminator.len();
        self.state = State::DataReply;
        self.timer_start = now.monotonic_milliseconds;
        true
    }

    /// Advances the session: reads buffered replies, sends the next command, reports results.
    /// `None`: send the output, then wait for server bytes (until [`Self::deadline`]).
    pub fn poll(&mut self, now: Now) -> Option<ClientEvent> {
        loop {
            // Queued events first, but never a `Close` while recipients still wait for their
            // bulk result: a driver stops at `Close`, and the reasons would be lost.
            let bulk_waiting = self.bulk.is_some() && self.unreported != 0;
            if !(bulk_waiting && matches!(self.pending.front(), Some(ClientEvent::Close))) {
                if let Some(event) = self.pending.pop_front() {
                    return Some(event);
                }
            }
            if let Some(bulk) = self.bulk {
                if self.unreported == 0 {
                    self.bulk = None;
                    continue;
                }
                let index = self.unreported.trailing_zeros() as usize;
                self.unreported &= !(1u128 << index);
                return Some(ClientEvent::RecipientResult(RecipientResult {
                    index,
                    outcome: bulk.outcome,
                    code: bulk.code,
                    enhanced: bulk.enhanced,
                    reason: bulk.reason,
                }));
            }
            match self.state {
                State::Finished => return None,
                State::AwaitingTls => return None,
                State::Body => return None,
                _ => {}
            }
            if CLIENT_OUTPUT_BUFFER_SIZE - self.output_length < REPLY_LINE_MAX + 256 {
                return Some(ClientEvent::OutputFull);
            }
            let window = &self.input[self.input_start..self.input_end];
            let Some(newline) = window.iter().position(|&b| b == b'\n') else {
                if window.len() >= REPLY_LINE_MAX {
                    self.protocol_error();
                    continue;
                }
                if self.deadline().is_some_and(|deadline| now.monotonic_milliseconds >= deadline) {
                    self.fail_all(Outcome::Deferred, 0, None, ResultReason::Timeout, false);
                    continue;
                }
                return None;
            };
            let line_start = self.input_start;
            self.input_start += newline + 1;
            if newline == 0 || newline + 1 > REPLY_LINE_MAX || self.input[line_start + newline - 1] != b'\r' {
                self.protocol_error();
                continue;
            }
            let line_end = line_start + newline - 1;
            self.reply_line_received(line_start, line_end, now);
        }
    }

    fn hello_verb(&self) -> &'static str {
        match self.config.protocol {
            ClientProtocol::Smtp => "EHLO",
            ClientProtocol::Lmtp => "LHLO",
        }
    }

    /// Handles one reply line `input[start..end]` (CRLF removed).
    fn reply_line_received(&mut self, start: usize, end: usize, now: Now) {
        let line = &self.input[start..end];
        let code = match line.get(..3) {
            Some(digits) if digits.iter().all(u8::is_ascii_digit) && (b'2'..=b'5').contains(&digits[0]) => {
                u16::from(digits[0] - b'0') * 100 + u16::from(digits[1] - b'0') * 10 + u16::from(digits[2] - b'0')
            }
            _ => return self.protocol_error(),
        };
        let continued = match line.get(3) {
            None | Some(b' ') => false,
            Some(b'-') => true,
            Some(_) => return self.protocol_error(),
        };
        if self.reply_line > 0 && code != self.reply_code {
            return self.protocol_error();
        }
        self.reply_code = code;
        let text_start = (start + 4).min(end);
        if matches!(self.state, State::Hello) && self.reply_line > 0 && code == 250 {
            self.capability(text_start, end);
        }
        self.reply_line += 1;
        if continued {
            return;
        }
        self.reply_line = 0;
        let enhanced = parse_enhanced(&self.input[text_start..end]);
        self.timer_start = now.monotonic_milliseconds;
        self.reply(code, enhanced, now);
    }

    fn capability(&mut self, start: usize, end: usize) {
        let text = &self.input[start..end];
        let keyword_end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
        let keyword = &text[..keyword_end];
        let parameters = &text[keyword_end..];
        let capabilities = &mut self.capabilities;
        if keyword.eq_ignore_ascii_case(b"STARTTLS") {
            capabilities.starttls = true;
        } else if keyword.eq_ignore_ascii_case(b"8BITMIME") {
            capabilities.eight_bit_mime = true;
        } else if keyword.eq_ignore_ascii_case(b"SIZE") {
            capabilities.size_offered = true;
            let digits = parameters.iter().skip_while(|&&b| b == b' ');
            let mut value: u64 = 0;
            let mut any = false;
            for &digit in digits {
                if !digit.is_ascii_digit() {
                    break;
                }
                any = true;
                value = value.saturating_mul(10).saturating_add(u64::from(digit - b'0'));
            }
            // SIZE 0 or without a number: no fixed limit (RFC 1870).
            capabilities.size_limit = if any && value > 0 { Some(value) } else { None };
        } else if keyword.eq_ignore_ascii_case(b"AUTH") {
            capabilities.auth_offered = true;
            for mechanism in parameters.split(|&b| b == b' ') {
                if mechanism.eq_ignore_ascii_case(b"PLAIN") {
                    capabilities.auth_plain = true;
                } else if mechanism.eq_ignore_ascii_case(b"LOGIN") {
                    capabilities.auth_login = true;
                }
            }
        } else if looks_like_stripped_starttls(keyword) {
            capabilities.stripped_starttls = true;
        }
    }

    /// Writes a command and moves to `state`.
    fn command(&mut self, state: State, arguments: core::fmt::Arguments<'_>) {
        let mut writer = SliceWriter::new(&mut self.output, self.output_length);
        if writer.write_fmt(arguments).is_ok() {
            self.output_length = writer.length();
            self.state = state;
        } else {
            self.fail_all(Outcome::Deferred, 0, None, ResultReason::ProtocolError, false);
        }
    }

    fn protocol_error(&mut self) {
        self.input_start = self.input_end;
        self.fail_all(Outcome::Deferred, 0, None, ResultReason::ProtocolError, false);
    }

    /// Gives every recipient without a result this one, then QUITs (or just closes).
    fn fail_all(&mut self, outcome: Outcome, code: u16, enhanced: Option<EnhancedCode>, reason: ResultReason, quit: bool) {
        if self.unreported != 0 {
            self.bulk = Some(BulkReport { outcome, code, enhanced, reason });
        }
        self.finish(quit);
    }

    fn finish(&mut self, quit: bool) {
        if quit {
            self.command(State::Quit, format_args!("QUIT\r\n"));
        } else {
            self.state = State::Finished;
            let _ = self.pending.push_back(ClientEvent::Close);
        }
    }

    fn report(&mut self, index: usize, outcome: Outcome, code: u16, enhanced: Option<EnhancedCode>) {
        self.unreported &= !(1u128 << index);
        let _ = self.pending.push_back(ClientEvent::RecipientResult(RecipientResult {
            index,
            outcome,
            code,
            enhanced,
            reason: ResultReason::Reply,
        }));
    }

    fn reply(&mut self, code: u16, enhanced: Option<EnhancedCode>, now: Now) {
        let _ = now;
        match self.state {
            State::Greeting => {
                if code == 220 {
                    self.command(State::Hello, format_args!("{} {}\r\n", self.hello_verb(), self.config.hostname));
                } else {
                    self.refused(code, enhanced);
                }
            }
            State::Hello | State::HeloFallback => {
                if code == 250 {
                    self.after_hello();
                } else if self.state == State::Hello
                    && self.config.protocol == ClientProtocol::Smtp
                    && code >= 500
                    && self.config.tls != TlsRequirement::Required
                    && self.config.credentials.is_none()
                {
                    self.capabilities = Capabilities::default();
                    self.command(State::HeloFallback, format_args!("HELO {}\r\n", self.config.hostname));
                } else {
                    self.refused(code, enhanced);
                }
            }
            State::StartTls => {
                if code == 220 {
                    // Client side of CVE-2011-0411: nothing after the 220 is a reply.
                    let discarded = self.input_end - self.input_start;
                    self.input_start = 0;
                    self.input_end = 0;
                    if discarded > 0 {
                        let _ = self.pending.push_back(ClientEvent::PlaintextDiscarded { octets: discarded });
                    }
                    self.state = State::AwaitingTls;
                    let _ = self.pending.push_back(ClientEvent::StartTls);
                } else {
                    let _ = self.pending.push_back(ClientEvent::TlsProblem(TlsProblem::Refused(code)));
                    if self.config.tls == TlsRequirement::Required {
                        self.fail_all(Outcome::Deferred, code, enhanced, ResultReason::TlsUnavailable, true);
                    } else {
                        self.starttls_declined = true;
                        self.after_hello();
                    }
                }
            }
            State::AuthPlain => {
                if code == 235 {
                    self.authenticated = true;
                    self.start_mail();
                } else {
                    self.fail_all(Outcome::Deferred, code, enhanced, ResultReason::AuthFailed, true);
                }
            }
            State::AuthLoginUser | State::AuthLoginPassword => {
                if code != 334 {
                    self.fail_all(Outcome::Deferred, code, enhanced, ResultReason::AuthFailed, true);
                    return;
                }
                let Some(credentials) = self.config.credentials else { return self.protocol_error() };
                let (secret, next) = if self.state == State::AuthLoginUser {
                    (credentials.username, State::AuthLoginPassword)
                } else {
                    (credentials.password, State::AuthPlain)
                };
                self.send_base64_line(None, &[secret.as_bytes()], next);
            }
            State::Mail => {
                if code == 250 {
                    self.send_recipient(0);
                } else {
                    self.fail_all(classify(code), code, enhanced, ResultReason::Reply, true);
                }
            }
            State::Recipient(index) => {
                match classify(code) {
                    Outcome::Delivered => self.accepted |= 1u128 << index,
                    // 552 to RCPT means "too many recipients" in old servers: temporary.
                    _ if code == 552 => self.report(index, Outcome::Deferred, code, enhanced),
                    outcome => self.report(index, outcome, code, enhanced),
                }
                if index + 1 < self.envelope.recipients.len() {
                    self.send_recipient(index + 1);
                } else if self.accepted != 0 {
                    self.command(State::Data, format_args!("DATA\r\n"));
                } else {
                    self.finish(true);
                }
            }
            State::Data => {
                if code == 354 {
                    self.state = State::Body;
                    self.stuffer = DotStuffer::new();
                    let _ = self.pending.push_back(ClientEvent::SendBody);
                } else {
                    self.fail_all(classify(code), code, enhanced, ResultReason::Reply, true);
                }
            }
            State::DataReply => match self.config.protocol {
                ClientProtocol::Smtp => self.fail_all(classify(code), code, enhanced, ResultReason::Reply, true),
                ClientProtocol::Lmtp => {
                    // One reply per accepted recipient, in RCPT order (RFC 2033 4.2).
                    let remaining = self.accepted & self.unreported;
                    if remaining == 0 {
                        return self.protocol_error();
                    }
                    let index = remaining.trailing_zeros() as usize;
                    self.report(index, classify(code), code, enhanced);
                    if self.accepted & self.unreported == 0 {
                        self.finish(true);
                    }
                }
            },
            State::Quit => self.finish(false),
            State::AwaitingTls | State::Body | State::Finished => {}
        }
    }

    /// The server refused the session (greeting or EHLO/LHLO) with `code`. With TLS required
    /// and not yet up, the reply came in clear and may be forged by whoever sits on the path:
    /// a permanent code only defers (and raises the alert), it never bounces the mail.
    fn refused(&mut self, code: u16, enhanced: Option<EnhancedCode>) {
        let untrusted = self.config.tls == TlsRequirement::Required && !self.tls_active;
        if untrusted && classify(code) == Outcome::Bounced {
            let _ = self.pending.push_back(ClientEvent::TlsProblem(TlsProblem::RefusedBeforeTls(code)));
            self.fail_all(Outcome::Deferred, code, enhanced, ResultReason::TlsUnavailable, true);
        } else {
            self.fail_all(classify(code), code, enhanced, ResultReason::Reply, true);
        }
    }

    fn after_hello(&mut self) {
        let capabilities = self.capabilities;
        if !self.tls_active && self.config.tls != TlsRequirement::Disabled && !self.starttls_declined {
            if capabilities.starttls {
                self.command(State::StartTls, format_args!("STARTTLS\r\n"));
                return;
            }
            if self.config.tls == TlsRequirement::Required {
                let problem = if capabilities.stripped_starttls { TlsProblem::Stripped } else { TlsProblem::NotOffered };
                let _ = self.pending.push_back(ClientEvent::TlsProblem(problem));
                self.fail_all(Outcome::Deferred, 0, None, ResultReason::TlsUnavailable, true);
                return;
            }
            if capabilities.stripped_starttls {
                let _ = self.pending.push_back(ClientEvent::TlsProblem(TlsProblem::Stripped));
            }
        }
        if let (Some(credentials), false) = (self.config.credentials, self.authenticated) {
            if !self.tls_active {
                self.fail_all(Outcome::Deferred, 0, None, ResultReason::CredentialsNeedTls, true);
            } else if capabilities.auth_plain {
                let username = credentials.username.as_bytes();
                let password = credentials.password.as_bytes();
                self.send_base64_line(Some("AUTH PLAIN "), &[b"\0", username, b"\0", password], State::AuthPlain);
            } else if capabilities.auth_login {
                self.command(State::AuthLoginUser, format_args!("AUTH LOGIN\r\n"));
            } else if capabilities.auth_offered {
                self.fail_all(Outcome::Deferred, 0, None, ResultReason::AuthMechanismUnsupported, true);
            } else {
                self.start_mail();
            }
            return;
        }
        self.start_mail();
    }

    /// Writes `prefix` + base64(concatenation of `parts`) + CRLF without a scratch buffer
    /// bigger than three octets.
    fn send_base64_line(&mut self, prefix: Option<&str>, parts: &[&[u8]], next: State) {
        let total: usize = parts.iter().map(|part| part.len()).sum();
        let prefix = prefix.unwrap_or("");
        let needed = prefix.len() + total.div_ceil(3) * 4 + 2;
        if needed > CLIENT_OUTPUT_BUFFER_SIZE - self.output_length {
            return self.fail_all(Outcome::Deferred, 0, None, ResultReason::ProtocolError, true);
        }
        let mut at = self.output_length;
        self.output[at..at + prefix.len()].copy_from_slice(prefix.as_bytes());
        at += prefix.len();
        let mut group = [0u8; 3];
        let mut filled = 0;
        for &byte in parts.iter().flat_map(|part| part.iter()) {
            group[filled] = byte;
            filled += 1;
            if filled == 3 {
                at += base64_encode(&group, &mut self.output[at..]).unwrap_or(0);
                filled = 0;
            }
        }
        if filled > 0 {
            at += base64_encode(&group[..filled], &mut self.output[at..]).unwrap_or(0);
        }
        group.fill(0);
        self.output[at..at + 2].copy_from_slice(b"\r\n");
        self.output_length = at + 2;
        self.state = next;
    }

    fn start_mail(&mut self) {
        let capabilities = self.capabilities;
        if let (Some(limit), Some(size)) = (capabilities.size_limit, self.envelope.size) {
            if size > limit {
                let enhanced = Some(EnhancedCode { class: 5, subject: 3, detail: 4 });
                return self.fail_all(Outcome::Bounced, 552, enhanced, ResultReason::MessageTooBig, true);
            }
        }
        let extended = self.state != State::HeloFallback;
        let mut writer = SliceWriter::new(&mut self.output, self.output_length);
        let mut written = write!(writer, "MAIL FROM:<{}>", self.envelope.sender);
        if extended {
            if let (true, Some(size)) = (capabilities.size_offered, self.envelope.size) {
                written = written.and_then(|_| write!(writer, " SIZE={size}"));
            }
            if self.envelope.eight_bit && capabilities.eight_bit_mime {
                written = written.and_then(|_| write!(writer, " BODY=8BITMIME"));
            }
        }
        written = written.and_then(|_| writer.write_str("\r\n"));
        if written.is_ok() {
            self.output_length = writer.length();
            self.state = State::Mail;
        } else {
            self.fail_all(Outcome::Deferred, 0, None, ResultReason::ProtocolError, false);
        }
    }

    fn send_recipient(&mut self, index: usize) {
        let recipient = self.envelope.recipients[index];
        self.command(State::Recipient(index), format_args!("RCPT TO:<{recipient}>\r\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        let mut output = [0u8; 16];
        for (input, expected) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ] {
            let length = base64_encode(input, &mut output).unwrap();
            assert_eq!(&output[..length], expected.as_bytes());
        }
        assert_eq!(base64_encode(b"foobar", &mut [0u8; 4]), None);
    }

    #[test]
    fn stripped_starttls_detection() {
        assert!(looks_like_stripped_starttls(b"XXXXXXXA"));
        assert!(looks_like_stripped_starttls(b"********"));
        assert!(!looks_like_stripped_starttls(b"STARTTLS"));
        assert!(!looks_like_stripped_starttls(b"8BITMIME"));
        assert!(!looks_like_stripped_starttls(b"XXXXXA"));
    }

    #[test]
    fn enhanced_codes() {
        assert_eq!(parse_enhanced(b"5.1.1 unknown"), Some(EnhancedCode { class: 5, subject: 1, detail: 1 }));
        assert_eq!(parse_enhanced(b"Ok"), None);
        assert_eq!(parse_enhanced(b"3.1.1 x"), None);
    }
}
