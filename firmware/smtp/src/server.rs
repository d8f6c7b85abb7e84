//! The SMTP server session: a sans-I/O state machine fed bytes and the time, producing reply
//! bytes and events (RFC 5321 with SIZE, 8BITMIME, PIPELINING, ENHANCEDSTATUSCODES, STARTTLS).
//!
//! The caller's loop (one session per connection):
//!
//! ```text
//! loop {
//!     match session.poll(now, &mut policy) {
//!         Some(Event::MessageData(chunk)) => spool.write(chunk),
//!         Some(Event::MessageComplete { .. }) => session.message_committed(spool.commit(), now),
//!         Some(Event::StartTls) => { send(session.output()); tls handshake; session.tls_established(details, now) }
//!         Some(Event::Close) => { send(session.output()); close; break }
//!         Some(Event::OutputFull) => send(session.output()),
//!         Some(other) => log(other),
//!         None => { send(session.output()); read into session.receive_buffer() until session.deadline() }
//!     }
//! }
//! ```
//!
//! "send" means: transmit `output()` and call `output_sent(n)`. Replies are produced in
//! command order; several pipelined commands from one read are answered together.

use core::fmt::Write;
use core::net::IpAddr;

use heapless::Deque;

use crate::address::{ForwardPath, ReversePath};
use crate::clock::Now;
use crate::command::{parse_command, Command, CommandError, MailParameters};
use crate::data::{DataDecoder, DataFault, DataStep};
use crate::limits::Limits;
use crate::policy::{ClientInfo, RecipientDecision, SenderDecision, SessionPolicy};
use crate::received::{write_received, ReceivedFields, SliceWriter, TlsDetails, TransactionId};
use crate::policy::RelayTrick;
use crate::address::AddressError;

/// Octets of received input a session buffers (a command line must fit).
pub const INPUT_BUFFER_SIZE: usize = 1024;
/// Octets of replies a session buffers before the caller must send them.
pub const OUTPUT_BUFFER_SIZE: usize = 768;
/// Octets for the `Received:` header of the current message.
pub const HEADER_BUFFER_SIZE: usize = 768;
/// Room a session wants free in its output before it handles another command (the largest
/// reply, the EHLO list with a 253-octet host name, fits).
const REPLY_SPACE: usize = 400;
/// Longest host name the session will put in replies and headers.
pub const HOSTNAME_LENGTH_MAX: usize = 253;

/// Settings shared by all server sessions of a listener.
#[derive(Clone, Copy, Debug)]
pub struct ServerConfig<'a> {
    /// This server's host name (greeting, EHLO, `Received:`), at most 253 octets.
    pub hostname: &'a str,
    /// Limits and their defaults.
    pub limits: Limits,
    /// Refuse MAIL with `530 5.7.0` until STARTTLS (for submission; never for a public MX,
    /// RFC 3207 section 4).
    pub require_tls: bool,
}

/// What the transport tells a new session about its connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionInfo {
    /// The client's address.
    pub client: IpAddr,
    /// A number the caller chose for this session (unique per boot and device is enough);
    /// it becomes the first part of the transaction ids.
    pub session_id: u64,
    /// Whether the transport can switch to TLS (STARTTLS is advertised only then).
    pub starttls_available: bool,
    /// TLS details if the connection is TLS from the start (port 465).
    pub implicit_tls: Option<TlsDetails>,
}

/// Why a command, a recipient or a message was refused (for the log and the counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// Unknown verb (`500 5.5.1`).
    UnknownCommand,
    /// Verb not implemented (`502 5.5.1`).
    NotImplemented,
    /// Another protocol's request, e.g. HTTP (`421 4.7.0`, closed).
    NotSmtp,
    /// Malformed arguments (`501 5.5.4`).
    SyntaxError,
    /// Malformed reverse path (`501 5.1.7`).
    SenderSyntax(AddressError),
    /// Malformed forward path, including double `@` and trailing dots (`501 5.1.3`).
    RecipientSyntax(AddressError),
    /// Unsupported MAIL/RCPT parameter (`555 5.5.4`).
    UnsupportedParameter,
    /// Command out of order (`503 5.5.1`).
    BadSequence,
    /// Command line over the limit (`500 5.5.2`).
    CommandLineTooLong,
    /// A bare CR or LF in a command line (`500 5.5.2`).
    BareLineEndingInCommand,
    /// MAIL without TLS where TLS is required (`530 5.7.0`).
    TlsRequired,
    /// STARTTLS not offered on this connection (`502 5.5.1`).
    StartTlsUnavailable,
    /// STARTTLS inside TLS (`503 5.5.1`).
    TlsAlreadyActive,
    /// SIZE above the limit (`552 5.3.4`).
    DeclaredSizeTooBig,
    /// The spool cannot take it (`452 4.3.1`).
    InsufficientStorage,
    /// The device is locked (`421 4.3.2` at connect/MAIL, `450 4.3.2` at RCPT).
    ServiceUnavailable,
    /// The policy refused the sender (`550 5.7.1`).
    SenderRefused,
    /// The client's hourly submission quota is used up (`450 4.7.1`).
    QuotaExceeded,
    /// A foreign domain from a client that may not relay (`550 5.7.1`).
    RelayDenied,
    /// A foreign domain from a LAN client while no smarthost is configured
    /// (`550 5.7.1 outbound mail is not configured`).
    OutboundNotConfigured,
    /// A relay trick (`550 5.7.1`).
    RelayTrick(RelayTrick),
    /// Unknown recipient in an accepted domain (`550 5.1.1`).
    UnknownRecipient,
    /// Recipient limit reached (`452 4.5.3`).
    TooManyRecipients,
    /// DATA without an accepted recipient (`554 5.5.1`).
    NoValidRecipients,
    /// A bare CR or LF in the message: SMTP smuggling (`554 5.5.2` after the end of data).
    BareLineEnding,
    /// A text line over the limit (`554 5.6.0` after the end of data).
    DataLineTooLong,
    /// The message grew over the size limit (`552 5.3.4` after the end of data).
    MessageTooBig,
    /// The caller could not commit the message (`451 4.3.0` or `452 4.3.1`).
    CommitFailed,
    /// No command or data within the timeout (`421 4.4.2`, closed).
    Timeout,
    /// The session lasted its time limit (`421 4.4.2`, closed).
    SessionTimeLimit,
    /// Message data arrived below the minimum rate (`421 4.4.2`, closed).
    DataTooSlow,
    /// Too many refused commands (`421 4.7.0`, closed).
    TooManyErrors,
}

/// A refusal as it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: RefusalReason,
    /// The reply code sent.
    pub code: u16,
}

/// Why a transaction (envelope and any message chunks given so far) must be discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// RSET, or a new HELO/EHLO.
    Reset,
    /// STARTTLS (RFC 3207: all state is forgotten).
    StartTls,
    /// QUIT before the transaction finished.
    Quit,
    /// The message is refused (the reason follows in a `Refused` event after its end).
    Refused(DataFault),
    /// The session timed out, collected too many errors, or the service became unavailable.
    SessionClosed,
}

/// How the caller's spool took the message given by `MessageComplete`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitResult {
    /// Stored durably: `250 2.0.0`.
    Committed,
    /// No room: `452 4.3.1`.
    InsufficientStorage,
    /// Any other failure: `451 4.3.0` (the client retries later).
    Failed,
}

/// What a session tells its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A command, recipient or message was refused (already answered).
    Refused(Refusal),
    /// MAIL accepted: a transaction starts with this sender.
    TransactionStarted {
        /// The sender (`Null` for bounces).
        reverse_path: ReversePath<'a>,
        /// SIZE and BODY.
        parameters: MailParameters,
    },
    /// RCPT accepted.
    RecipientAccepted(ForwardPath<'a>),
    /// DATA accepted (354 sent); message chunks follow.
    MessageBegin(TransactionId),
    /// The next chunk of the message: first the `Received:` header, then the body,
    /// dot-unstuffed with CRLF line ends.
    MessageData(&'a [u8]),
    /// The message ended; commit it, then call [`ServerSession::message_committed`]. The
    /// session answers `250` only then.
    MessageComplete {
        /// The transaction's id (also in the `Received:` header).
        id: TransactionId,
        /// Body octets received (without the `Received:` header).
        body_size: u64,
    },
    /// Discard the current envelope and every chunk of the current message.
    TransactionAborted(AbortReason),
    /// Send the output (it ends with `220`), then start the TLS handshake and call
    /// [`ServerSession::tls_established`]. Plaintext after the STARTTLS line was discarded.
    StartTls,
    /// Plaintext that followed STARTTLS was thrown away (CVE-2011-0411 style injection).
    PlaintextDiscarded {
        /// Octets discarded.
        octets: usize,
    },
    /// The output buffer is nearly full: send it before polling again.
    OutputFull,
    /// Send the output, then close the connection.
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Start,
    Command,
    DiscardLine,
    Data,
    AwaitingCommit,
    AwaitingTls,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Greeting {
    None,
    Helo,
    Ehlo,
}

/// A server session (one per connection). Its RAM is `size_of::<ServerSession>()`; see the
/// README for the figure.
pub struct ServerSession<'a> {
    input: [u8; INPUT_BUFFER_SIZE],
    input_start: usize,
    input_end: usize,
    core: Core<'a>,
}

/// Everything but the input buffer, so that events can borrow the input while the state
/// changes.
struct Core<'a> {
    config: &'a ServerConfig<'a>,
    limits: Limits,
    connection: ConnectionInfo,
    tls: Option<TlsDetails>,
    phase: Phase,
    greeting: Greeting,
    helo: [u8; 255],
    helo_length: usize,
    in_transaction: bool,
    recipients: usize,
    transaction_number: u32,
    errors: u32,
    timer_start: u64,
    session_start: u64,
    data_start: u64,
    data_octets: u64,
    decoder: DataDecoder,
    header_pending: bool,
    header: [u8; HEADER_BUFFER_SIZE],
    header_length: usize,
    output: [u8; OUTPUT_BUFFER_SIZE],
    output_length: usize,
    pending: Deque<Event<'static>, 6>,
}

impl<'a> ServerSession<'a> {
    /// A session for a new connection; the greeting is produced by the first `poll`.
    pub fn new(config: &'a ServerConfig<'a>, connection: ConnectionInfo, now: Now) -> ServerSession<'a> {
        let mut limits = config.limits;
        limits.command_line_length = limits.command_line_length.clamp(16, INPUT_BUFFER_SIZE);
        limits.recipients_per_message = limits.recipients_per_message.max(1);
        ServerSession {
            input: [0; INPUT_BUFFER_SIZE],
            input_start: 0,
            input_end: 0,
            core: Core {
                config,
                limits,
                connection,
                tls: connection.implicit_tls,
                phase: Phase::Start,
                greeting: Greeting::None,
                helo: [0; 255],
                helo_length: 0,
                in_transaction: false,
                recipients: 0,
                transaction_number: 0,
                errors: 0,
                timer_start: now.monotonic_milliseconds,
                session_start: now.monotonic_milliseconds,
                data_start: now.monotonic_milliseconds,
                data_octets: 0,
                decoder: DataDecoder::new(limits.text_line_length, limits.message_size),
                header_pending: false,
                header: [0; HEADER_BUFFER_SIZE],
                header_length: 0,
                output: [0; OUTPUT_BUFFER_SIZE],
                output_length: 0,
                pending: Deque::new(),
            },
        }
    }

    /// Reply bytes to send to the client now.
    pub fn output(&self) -> &[u8] {
        &self.core.output[..self.core.output_length]
    }

    /// Tells the session that the first `octets` of [`Self::output`] were sent.
    pub fn output_sent(&mut self, octets: usize) {
        let octets = octets.min(self.core.output_length);
        self.core.output.copy_within(octets..self.core.output_length, 0);
        self.core.output_length -= octets;
    }

    /// Free space to read client bytes into; call [`Self::received`] after filling a prefix.
    /// Empty while the session does not take input (its buffer is full of unprocessed
    /// commands: poll first).
    pub fn receive_buffer(&mut self) -> &mut [u8] {
        self.compact_input();
        &mut self.input[self.input_end..]
    }

    /// Accounts for `octets` written into [`Self::receive_buffer`].
    pub fn received(&mut self, octets: usize, now: Now) {
        let octets = octets.min(INPUT_BUFFER_SIZE - self.input_end);
        self.input_end += octets;
        self.after_input(octets, now);
    }

    /// Copies client bytes in; returns how many were taken (fewer when the buffer is full).
    pub fn receive(&mut self, data: &[u8], now: Now) -> usize {
        if matches!(self.core.phase, Phase::AwaitingTls | Phase::Closed) {
            return data.len();
        }
        let buffer = self.receive_buffer();
        let octets = data.len().min(buffer.len());
        buffer[..octets].copy_from_slice(&data[..octets]);
        self.received(octets, now);
        octets
    }

    fn after_input(&mut self, octets: usize, now: Now) {
        match self.core.phase {
            // Plaintext while the TLS handshake is due, or after the end, is never processed.
            Phase::AwaitingTls | Phase::Closed => self.input_end = self.input_start,
            Phase::Data if octets > 0 => {
                self.core.timer_start = now.monotonic_milliseconds;
                self.core.data_octets += octets as u64;
            }
            _ => {}
        }
    }

    fn compact_input(&mut self) {
        if self.input_start > 0 {
            self.input.copy_within(self.input_start..self.input_end, 0);
            self.input_end -= self.input_start;
            self.input_start = 0;
        }
    }

    /// The monotonic millisecond time at which the session times out if nothing arrives: the
    /// command or data timeout, the session's time limit, or (in DATA) the moment the data
    /// received so far falls below the minimum rate, whichever comes first.
    pub fn deadline(&self) -> Option<u64> {
        let core = &self.core;
        let timeout = match core.phase {
            Phase::Start | Phase::Command | Phase::DiscardLine => core.limits.command_timeout_milliseconds,
            Phase::Data => core.limits.data_timeout_milliseconds,
            _ => return None,
        };
        let mut deadline = core
            .timer_start
            .saturating_add(timeout)
            .min(core.session_start.saturating_add(core.limits.session_time_milliseconds));
        if core.phase == Phase::Data && core.limits.minimum_data_octets_per_second > 0 {
            // Too slow once elapsed × rate > octets × 1000.
            let allowed = (core.data_octets.saturating_mul(1000) / core.limits.minimum_data_octets_per_second).saturating_add(1);
            deadline = deadline.min(core.data_start.saturating_add(allowed.max(core.limits.data_rate_grace_milliseconds)));
        }
        Some(deadline)
    }

    /// Whether the session is over (after `Close`).
    pub fn is_closed(&self) -> bool {
        self.core.phase == Phase::Closed
    }

    /// Whether a message is being received or awaits its commit (its chunks are not final).
    pub fn in_message(&self) -> bool {
        matches!(self.core.phase, Phase::Data | Phase::AwaitingCommit)
    }

    /// Whether the session runs inside TLS.
    pub fn tls_active(&self) -> bool {
        self.core.tls.is_some()
    }

    /// After `StartTls`: the handshake succeeded. The session starts over (RFC 3207 4.2:
    /// the client must say EHLO again); nothing from before the handshake is kept.
    pub fn tls_established(&mut self, details: TlsDetails, now: Now) {
        if self.core.phase == Phase::AwaitingTls {
            self.input_start = 0;
            self.input_end = 0;
            self.core.tls = Some(details);
            self.core.phase = Phase::Command;
            self.core.timer_start = now.monotonic_milliseconds;
        }
    }

    /// After `MessageComplete`: how the spool took the message. Produces the final reply.
    pub fn message_committed(&mut self, result: CommitResult, now: Now) {
        if self.core.phase != Phase::AwaitingCommit {
            return;
        }
        let core = &mut self.core;
        core.phase = Phase::Command;
        core.timer_start = now.monotonic_milliseconds;
        core.end_transaction();
        match result {
            CommitResult::Committed => {
                let id = core.transaction_id();
                core.reply_fmt(format_args!("250 2.0.0 Ok: queued as {id}\r\n"));
            }
            CommitResult::InsufficientStorage => {
                core.refuse(452, "4.3.1", "Insufficient system storage", RefusalReason::CommitFailed);
            }
            CommitResult::Failed => {
                core.refuse(451, "4.3.0", "Local error in processing, try again later", RefusalReason::CommitFailed);
            }
        }
    }

    /// Advances the session: handles buffered input, timeouts and queued events. `None`
    /// means: send the output, then wait for input (until [`Self::deadline`]).
    pub fn poll<P: SessionPolicy + ?Sized>(&mut self, now: Now, policy: &mut P) -> Option<Event<'_>> {
        loop {
            if let Some(event) = self.core.pending.pop_front() {
                return Some(event);
            }
            match self.core.phase {
                Phase::Start => {
                    self.core.start(now, policy);
                    continue;
                }
                Phase::Closed | Phase::AwaitingTls | Phase::AwaitingCommit => return None,
                Phase::Data => {
                    if self.core.header_pending {
                        self.core.header_pending = false;
                        return Some(Event::MessageData(&self.core.header[..self.core.header_length]));
                    }
                    if self.core.output_space() < REPLY_SPACE {
                        return Some(Event::OutputFull);
                    }
                    let start = self.input_start;
                    let outcome = self.core.decoder.step(&self.input[start..self.input_end]);
                    self.input_start += outcome.consumed;
                    match outcome.step {
                        DataStep::Body { start: from, end: to } => {
                            return Some(Event::MessageData(&self.input[start + from..start + to]));
                        }
                        DataStep::Skipped => continue,
                        DataStep::Fault(fault) => return Some(Event::TransactionAborted(AbortReason::Refused(fault))),
                        DataStep::End => {
                            self.core.end_of_data();
                            continue;
                        }
                        DataStep::NeedMore => {
                            if self.core.timed_out(now) {
                                continue;
                            }
                            return None;
                        }
                    }
                }
                Phase::DiscardLine => {
                    let window = &self.input[self.input_start..self.input_end];
                    match find_crlf(window) {
                        Some(index) => {
                            self.input_start += index + 2;
                            self.core.phase = Phase::Command;
                        }
                        None => {
                            let keep = usize::from(window.last() == Some(&b'\r'));
                            self.input_start = self.input_end - keep;
                            if self.core.timed_out(now) {
                                continue;
                            }
                            return None;
                        }
                    }
                }
                Phase::Command => {
                    let limit = self.core.limits.command_line_length;
                    let available = self.input_end - self.input_start;
                    let window_end = self.input_start + available.min(limit);
                    let window = &self.input[self.input_start..window_end];
                    let line_end = find_crlf(window);
                    if line_end.is_none() && available < limit {
                        if self.core.timed_out(now) {
                            continue;
                        }
                        return None;
                    }
                    if self.core.output_space() < REPLY_SPACE {
                        return Some(Event::OutputFull);
                    }
                    let Some(line_length) = line_end else {
                        // No CRLF within the limit: refuse and skip the rest of this line.
                        let keep = usize::from(window.last() == Some(&b'\r'));
                        self.input_start = window_end - keep;
                        self.core.phase = Phase::DiscardLine;
                        self.core.refuse(500, "5.5.2", "Line too long", RefusalReason::CommandLineTooLong);
                        continue;
                    };
                    let line_start = self.input_start;
                    self.input_start += line_length + 2;
                    self.core.timer_start = now.monotonic_milliseconds;
                    let line = &self.input[line_start..line_start + line_length];
                    match self.core.command(line, now, policy) {
                        None => {}
                        Some(CommandEvent::Owned(Event::StartTls)) => {
                            // CVE-2011-0411: nothing sent before the handshake is a command.
                            let discarded = self.input_end - self.input_start;
                            self.input_start = 0;
                            self.input_end = 0;
                            if discarded > 0 {
                                let _ = self.core.pending.push_back(Event::PlaintextDiscarded { octets: discarded });
                            }
                            let _ = self.core.pending.push_back(Event::StartTls);
                        }
                        Some(CommandEvent::Owned(event)) => {
                            let _ = self.core.pending.push_back(event);
                        }
                        Some(event) => {
                            // Re-borrow: the event points into the input line.
                            let line = &self.input[line_start..line_start + line_length];
                            return Some(Core::event_for(event, line));
                        }
                    }
                }
            }
        }
    }
}

/// Index of the first CRLF in `bytes`.
fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|pair| pair == b"\r\n")
}

/// An event from command handling before it is tied to the input line again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CommandEvent {
    Owned(Event<'static>),
    TransactionStarted,
    RecipientAccepted,
}

impl<'a> Core<'a> {
    fn event_for<'line>(event: CommandEvent, line: &'line [u8]) -> Event<'line> {
        match event {
            CommandEvent::Owned(event) => event,
            CommandEvent::TransactionStarted => match parse_command(line) {
                Ok(Command::Mail { reverse_path, parameters }) => Event::TransactionStarted { reverse_path, parameters },
                _ => unreachable!("the line parsed as MAIL a moment ago"),
            },
            CommandEvent::RecipientAccepted => match parse_command(line) {
                Ok(Command::Recipient(path)) => Event::RecipientAccepted(path),
                _ => unreachable!("the line parsed as RCPT a moment ago"),
            },
        }
    }

    fn output_space(&self) -> usize {
        OUTPUT_BUFFER_SIZE - self.output_length
    }

    fn hostname(&self) -> &'a str {
        let hostname = self.config.hostname;
        if hostname.len() <= HOSTNAME_LENGTH_MAX && hostname.bytes().all(|b| b.is_ascii_graphic()) {
            hostname
        } else {
            "localhost"
        }
    }

    fn client_info(&self) -> ClientInfo {
        ClientInfo { address: self.connection.client, tls_active: self.tls.is_some() }
    }

    fn transaction_id(&self) -> TransactionId {
        TransactionId { session: self.connection.session_id, transaction: self.transaction_number }
    }

    /// Appends formatted text to the output; a reply that would not fit is cut short at a
    /// line end rather than overflowing (cannot happen with the reserved space).
    fn reply_fmt(&mut self, arguments: core::fmt::Arguments<'_>) {
        let mut writer = SliceWriter::new(&mut self.output, self.output_length);
        if writer.write_fmt(arguments).is_ok() {
            self.output_length = writer.length();
        }
    }

    fn reply(&mut self, code: u16, enhanced: &str, text: &str) {
        self.reply_fmt(format_args!("{code} {enhanced} {text}\r\n"));
    }

    /// Sends a refusal, reports it, counts it, and closes after too many.
    fn refuse(&mut self, code: u16, enhanced: &str, text: &str, reason: RefusalReason) {
        self.reply(code, enhanced, text);
        let _ = self.pending.push_back(Event::Refused(Refusal { reason, code }));
        let counts = !matches!(
            reason,
            RefusalReason::TooManyRecipients
                | RefusalReason::InsufficientStorage
                | RefusalReason::ServiceUnavailable
                | RefusalReason::CommitFailed
                | RefusalReason::DeclaredSizeTooBig
                | RefusalReason::MessageTooBig
        );
        if counts && code >= 500 {
            self.errors += 1;
            if self.errors >= self.limits.errors_per_session.max(1) && self.phase != Phase::Closed {
                let hostname = self.hostname();
                self.reply_fmt(format_args!("421 4.7.0 {hostname} Too many errors, closing connection\r\n"));
                let _ = self.pending.push_back(Event::Refused(Refusal { reason: RefusalReason::TooManyErrors, code: 421 }));
                self.close(AbortReason::SessionClosed);
            }
        }
    }

    /// Ends the session after the output is sent.
    fn close(&mut self, reason: AbortReason) {
        if self.in_transaction || matches!(self.phase, Phase::Data | Phase::AwaitingCommit) {
            let _ = self.pending.push_back(Event::TransactionAborted(reason));
        }
        self.in_transaction = false;
        self.phase = Phase::Closed;
        let _ = self.pending.push_back(Event::Close);
    }

    fn end_transaction(&mut self) {
        self.in_transaction = false;
        self.recipients = 0;
    }

    fn abort_transaction(&mut self, reason: AbortReason) {
        if self.in_transaction {
            let _ = self.pending.push_back(Event::TransactionAborted(reason));
        }
        self.end_transaction();
    }

    fn start<P: SessionPolicy + ?Sized>(&mut self, now: Now, policy: &mut P) {
        self.timer_start = now.monotonic_milliseconds;
        let hostname = self.hostname();
        if policy.service_available(&self.client_info()) {
            self.reply_fmt(format_args!("220 {hostname} ESMTP homemx\r\n"));
            self.phase = Phase::Command;
        } else {
            self.reply_fmt(format_args!("421 4.3.2 {hostname} Service not available, try again later\r\n"));
            let _ = self.pending.push_back(Event::Refused(Refusal { reason: RefusalReason::ServiceUnavailable, code: 421 }));
            self.close(AbortReason::SessionClosed);
        }
    }

    /// Closes with `421 4.4.2` if the command or data timeout, the session's time limit or
    /// the minimum data rate says so; returns whether it did.
    fn timed_out(&mut self, now: Now) -> bool {
        let timeout = match self.phase {
            Phase::Command | Phase::DiscardLine => self.limits.command_timeout_milliseconds,
            Phase::Data => self.limits.data_timeout_milliseconds,
            _ => return false,
        };
        let now = now.monotonic_milliseconds;
        let in_data = now.saturating_sub(self.data_start);
        let (reason, text) = if now.saturating_sub(self.session_start) >= self.limits.session_time_milliseconds {
            (RefusalReason::SessionTimeLimit, "Session time limit reached")
        } else if self.phase == Phase::Data
            && in_data >= self.limits.data_rate_grace_milliseconds
            && u128::from(self.data_octets) * 1000 < u128::from(self.limits.minimum_data_octets_per_second) * u128::from(in_data)
        {
            (RefusalReason::DataTooSlow, "Data arriving too slowly")
        } else if now.saturating_sub(self.timer_start) >= timeout {
            (RefusalReason::Timeout, "Timeout")
        } else {
            return false;
        };
        let hostname = self.hostname();
        self.reply_fmt(format_args!("421 4.4.2 {hostname} {text}, closing connection\r\n"));
        let _ = self.pending.push_back(Event::Refused(Refusal { reason, code: 421 }));
        self.close(AbortReason::SessionClosed);
        true
    }

    fn end_of_data(&mut self) {
        self.phase = Phase::Command;
        match self.decoder.fault() {
            None => {
                self.phase = Phase::AwaitingCommit;
                let id = self.transaction_id();
                let _ = self.pending.push_back(Event::MessageComplete { id, body_size: self.decoder.body_size() });
            }
            Some(fault) => {
                self.end_transaction();
                match fault {
                    DataFault::BareLineEnding => self.refuse(
                        554,
                        "5.5.2",
                        "Message refused: bare CR or LF in data, only CRLF ends a line",
                        RefusalReason::BareLineEnding,
                    ),
                    DataFault::LineTooLong => self.refuse(
                        554,
                        "5.6.0",
                        "Message refused: text line longer than 1000 octets",
                        RefusalReason::DataLineTooLong,
                    ),
                    DataFault::MessageTooBig => self.refuse(
                        552,
                        "5.3.4",
                        "Message size exceeds fixed maximum message size",
                        RefusalReason::MessageTooBig,
                    ),
                }
            }
        }
    }

    fn command<P: SessionPolicy + ?Sized>(&mut self, line: &[u8], now: Now, policy: &mut P) -> Option<CommandEvent> {
        if line.iter().any(|&b| b == b'\r' || b == b'\n') {
            self.refuse(500, "5.5.2", "Syntax error: bare CR or LF in command line", RefusalReason::BareLineEndingInCommand);
            return None;
        }
        let command = match parse_command(line) {
            Ok(command) => command,
            Err(error) => {
                self.command_error(error);
                return None;
            }
        };
        match command {
            Command::Ehlo(domain) | Command::Helo(domain) => {
                self.abort_transaction(AbortReason::Reset);
                let length = domain.len().min(self.helo.len());
                self.helo[..length].copy_from_slice(&domain.as_bytes()[..length]);
                self.helo_length = length;
                let hostname = self.hostname();
                if let Command::Helo(_) = command {
                    self.greeting = Greeting::Helo;
                    self.reply_fmt(format_args!("250 {hostname}\r\n"));
                } else {
                    self.greeting = Greeting::Ehlo;
                    self.ehlo_reply();
                }
            }
            Command::Mail { reverse_path, parameters } => return self.mail(&reverse_path, parameters, policy),
            Command::Recipient(forward_path) => return self.recipient(&forward_path, policy),
            Command::Data => return self.data(now),
            Command::Reset => {
                self.abort_transaction(AbortReason::Reset);
                self.reply(250, "2.0.0", "Ok");
            }
            Command::Noop => self.reply(250, "2.0.0", "Ok"),
            Command::Help => self.reply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY STARTTLS"),
            Command::Verify => self.reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery"),
            Command::Expand => self.reply(502, "5.5.1", "EXPN not available"),
            Command::Quit => {
                let hostname = self.hostname();
                self.reply_fmt(format_args!("221 2.0.0 {hostname} closing connection\r\n"));
                self.close(AbortReason::Quit);
            }
            Command::StartTls => {
                if self.tls.is_some() {
                    self.refuse(503, "5.5.1", "TLS already active", RefusalReason::TlsAlreadyActive);
                } else if !self.connection.starttls_available {
                    self.refuse(502, "5.5.1", "STARTTLS not available", RefusalReason::StartTlsUnavailable);
                } else {
                    self.reply(220, "2.0.0", "Ready to start TLS");
                    self.abort_transaction(AbortReason::StartTls);
                    self.greeting = Greeting::None;
                    self.helo_length = 0;
                    self.phase = Phase::AwaitingTls;
                    return Some(CommandEvent::Owned(Event::StartTls));
                }
            }
        }
        None
    }

    fn command_error(&mut self, error: CommandError) {
        match error {
            CommandError::Unrecognized => self.refuse(500, "5.5.1", "Command unrecognized", RefusalReason::UnknownCommand),
            CommandError::NotImplemented => {
                self.refuse(502, "5.5.1", "Command not implemented", RefusalReason::NotImplemented)
            }
            CommandError::NotSmtp => {
                let hostname = self.hostname();
                self.reply_fmt(format_args!("421 4.7.0 {hostname} This is an SMTP server, closing connection\r\n"));
                let _ = self.pending.push_back(Event::Refused(Refusal { reason: RefusalReason::NotSmtp, code: 421 }));
                self.close(AbortReason::SessionClosed);
            }
            CommandError::Syntax => {
                self.refuse(501, "5.5.4", "Syntax error in parameters or arguments", RefusalReason::SyntaxError)
            }
            CommandError::SenderAddress(error) => {
                self.refuse(501, "5.1.7", "Bad sender address syntax", RefusalReason::SenderSyntax(error))
            }
            CommandError::RecipientAddress(error) => {
                self.refuse(501, "5.1.3", "Bad recipient address syntax", RefusalReason::RecipientSyntax(error))
            }
            CommandError::UnsupportedParameter => self.refuse(
                555,
                "5.5.4",
                "Parameter not recognized or not implemented",
                RefusalReason::UnsupportedParameter,
            ),
        }
    }

    fn ehlo_reply(&mut self) {
        let hostname = self.hostname();
        let size = self.limits.message_size;
        self.reply_fmt(format_args!("250-{hostname}\r\n250-PIPELINING\r\n250-SIZE {size}\r\n250-8BITMIME\r\n"));
        if self.connection.starttls_available && self.tls.is_none() {
            self.reply_fmt(format_args!("250-STARTTLS\r\n"));
        }
        self.reply_fmt(format_args!("250 ENHANCEDSTATUSCODES\r\n"));
    }

    fn mail<P: SessionPolicy + ?Sized>(
        &mut self,
        reverse_path: &ReversePath<'_>,
        parameters: MailParameters,
        policy: &mut P,
    ) -> Option<CommandEvent> {
        if self.greeting == Greeting::None {
            self.refuse(503, "5.5.1", "Send EHLO or HELO first", RefusalReason::BadSequence);
            return None;
        }
        if self.in_transaction {
            self.refuse(503, "5.5.1", "Nested MAIL command", RefusalReason::BadSequence);
            return None;
        }
        if self.config.require_tls && self.tls.is_none() {
            self.refuse(530, "5.7.0", "Must issue a STARTTLS command first", RefusalReason::TlsRequired);
            return None;
        }
        if parameters.size.is_some_and(|size| size > self.limits.message_size) {
            self.refuse(552, "5.3.4", "Message size exceeds fixed maximum message size", RefusalReason::DeclaredSizeTooBig);
            return None;
        }
        match policy.check_sender(&self.client_info(), reverse_path, parameters.size) {
            SenderDecision::Accept => {
                self.in_transaction = true;
                self.recipients = 0;
                self.transaction_number = self.transaction_number.wrapping_add(1);
                self.reply(250, "2.1.0", "Sender OK");
                return Some(CommandEvent::TransactionStarted);
            }
            SenderDecision::InsufficientStorage => {
                self.refuse(452, "4.3.1", "Insufficient system storage", RefusalReason::InsufficientStorage)
            }
            SenderDecision::Refused => self.refuse(550, "5.7.1", "Sender refused", RefusalReason::SenderRefused),
            SenderDecision::QuotaExceeded => self.refuse(
                450,
                "4.7.1",
                "Hourly message quota for this client reached, try again later",
                RefusalReason::QuotaExceeded,
            ),
            SenderDecision::ServiceUnavailable => {
                let hostname = self.hostname();
                self.reply_fmt(format_args!("421 4.3.2 {hostname} Service not available, try again later\r\n"));
                let _ = self.pending.push_back(Event::Refused(Refusal { reason: RefusalReason::ServiceUnavailable, code: 421 }));
                self.close(AbortReason::SessionClosed);
            }
        }
        None
    }

    fn recipient<P: SessionPolicy + ?Sized>(&mut self, forward_path: &ForwardPath<'_>, policy: &mut P) -> Option<CommandEvent> {
        if !self.in_transaction {
            self.refuse(503, "5.5.1", "Need MAIL before RCPT", RefusalReason::BadSequence);
            return None;
        }
        if self.recipients >= self.limits.recipients_per_message {
            self.refuse(452, "4.5.3", "Too many recipients", RefusalReason::TooManyRecipients);
            return None;
        }
        match policy.check_recipient(&self.client_info(), forward_path) {
            RecipientDecision::Accept => {
                self.recipients += 1;
                self.reply(250, "2.1.5", "Recipient OK");
                return Some(CommandEvent::RecipientAccepted);
            }
            RecipientDecision::UnknownRecipient => {
                self.refuse(550, "5.1.1", "Recipient address rejected: user unknown", RefusalReason::UnknownRecipient)
            }
            RecipientDecision::RelayDenied => self.refuse(550, "5.7.1", "Relay access denied", RefusalReason::RelayDenied),
            RecipientDecision::OutboundNotConfigured => {
                self.refuse(550, "5.7.1", "outbound mail is not configured", RefusalReason::OutboundNotConfigured)
            }
            RecipientDecision::RelayTrick(trick) => {
                let text = match trick {
                    RelayTrick::PercentHack => "Relay access denied: % in local part",
                    RelayTrick::BangPath => "Relay access denied: ! in local part",
                    RelayTrick::SourceRoute => "Relay access denied: source routes not accepted",
                    RelayTrick::QuotedAt => "Relay access denied: @ in local part",
                    RelayTrick::QuotedLocalPart => "Relay access denied: unusual quoted local part",
                    RelayTrick::AddressLiteral => "Relay access denied: address literals not accepted",
                };
                self.refuse(550, "5.7.1", text, RefusalReason::RelayTrick(trick))
            }
            RecipientDecision::InsufficientStorage => {
                self.refuse(452, "4.3.1", "Insufficient system storage", RefusalReason::InsufficientStorage)
            }
            RecipientDecision::ServiceUnavailable => {
                self.refuse(450, "4.3.2", "Service temporarily unavailable", RefusalReason::ServiceUnavailable)
            }
        }
        None
    }

    fn data(&mut self, now: Now) -> Option<CommandEvent> {
        if !self.in_transaction {
            self.refuse(503, "5.5.1", "Need MAIL command", RefusalReason::BadSequence);
            return None;
        }
        if self.recipients == 0 {
            self.refuse(554, "5.5.1", "No valid recipients", RefusalReason::NoValidRecipients);
            return None;
        }
        let helo = core::str::from_utf8(&self.helo[..self.helo_length]).unwrap_or("");
        let fields = ReceivedFields {
            helo,
            client: self.connection.client,
            hostname: self.hostname(),
            extended: self.greeting == Greeting::Ehlo,
            tls: self.tls,
            id: self.transaction_id(),
            unix_seconds: now.unix_seconds,
        };
        match write_received(&fields, &mut self.header) {
            Ok(length) => self.header_length = length,
            Err(_) => {
                // Cannot happen with a checked host name; refuse rather than lose the trace.
                self.refuse(451, "4.3.0", "Local error in processing", RefusalReason::CommitFailed);
                return None;
            }
        }
        self.reply_fmt(format_args!("354 End data with <CR><LF>.<CR><LF>\r\n"));
        self.phase = Phase::Data;
        self.timer_start = now.monotonic_milliseconds;
        self.data_start = now.monotonic_milliseconds;
        self.data_octets = 0;
        self.decoder = DataDecoder::new(self.limits.text_line_length, self.limits.message_size);
        self.header_pending = true;
        Some(CommandEvent::Owned(Event::MessageBegin(self.transaction_id())))
    }
}
