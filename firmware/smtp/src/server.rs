//! The SMTP server session: a sans-I/O state machine fed bytes and the time, producing reply
//! bytes and events (RFC 5321 with SIZE, 8BITMIME, PIPELINING, ENHANCEDSTATUSCODES, STARTTLS,
//! and on submission listeners AUTH PLAIN and LOGIN inside TLS).
//!
//! The caller's loop (one session per connection):
//!
//! ```text
//! loop {
//!     match session.poll(now, &mut policy) {
//!         Some(Event::MessageData(chunk)) => spool.write(chunk),
//!         Some(Event::MessageComplete { .. }) => session.message_committed(spool.commit(), now),
//!         Some(Event::StartTls) => { send(session.output()); tls handshake; session.tls_established(details, now) }
//!         Some(Event::Authenticate(credentials)) => {
//!             let accepted = verify(credentials).await;          // the slow hash, the caller's job
//!             let result = if accepted { AuthResult::Accepted }
//!                          else { AuthResult::Refused { delay_milliseconds: throttle.record_failure(..).delay_milliseconds } };
//!             session.authentication_result(result, now)          // 235, or 535 after the delay
//!         }
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
use crate::command::{parse_command, AuthMechanism, Command, CommandError, MailParameters};
use crate::data::{DataDecoder, DataFault, DataStep};
use crate::limits::Limits;
use crate::policy::{ClientInfo, RecipientDecision, SenderDecision, SessionPolicy};
use crate::received::{write_received, ReceivedFields, SliceWriter, TlsDetails, TransactionId};
use crate::policy::RelayTrick;
use crate::address::AddressError;
use crate::sasl::{
    decode_base64, split_plain, wipe, AuthCredentials, DecodeError, CREDENTIALS_BUFFER_SIZE, LOGIN_PASSWORD_PROMPT,
    LOGIN_USERNAME_PROMPT, USER_NAME_LENGTH_MAX,
};

/// Octets of received input a session buffers (a command line must fit).
pub const INPUT_BUFFER_SIZE: usize = 1024;
/// Octets of replies a session buffers before the caller must send them.
pub const OUTPUT_BUFFER_SIZE: usize = 768;
/// Octets for the `Received:` header of the current message.
pub const HEADER_BUFFER_SIZE: usize = 768;
/// The buffer shared by the `Received:` header and the AUTH credentials.
const SCRATCH_BUFFER_SIZE: usize =
    if HEADER_BUFFER_SIZE > CREDENTIALS_BUFFER_SIZE { HEADER_BUFFER_SIZE } else { CREDENTIALS_BUFFER_SIZE };
/// Room a session wants free in its output before it handles another command (the largest
/// reply, the EHLO list with a 253-octet host name, fits).
const REPLY_SPACE: usize = 400;
/// Longest host name the session will put in replies and headers.
pub const HOSTNAME_LENGTH_MAX: usize = 253;
/// Longest `AUTH` command line or AUTH response line including CRLF (RFC 4954 allows 12288;
/// the session's input buffer is the limit here, and the decoded credentials must also fit
/// [`CREDENTIALS_BUFFER_SIZE`]). Over it: `500 5.5.6`.
pub const AUTH_LINE_LENGTH_MAX: usize = INPUT_BUFFER_SIZE;

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
    /// A submission listener (587 with STARTTLS, 465 with implicit TLS): `AUTH PLAIN LOGIN`
    /// is offered inside TLS (never in clear: `538 5.7.11` before TLS). Never on a public MX.
    pub submission: bool,
    /// On a submission listener: MAIL without a successful AUTH is refused with
    /// `530 5.7.0 Authentication required`. Default: true.
    pub submission_requires_auth: bool,
}

impl<'a> ServerConfig<'a> {
    /// A public MX listener's settings (no TLS required, no AUTH) with the default limits.
    pub const fn mx(hostname: &'a str) -> ServerConfig<'a> {
        ServerConfig { hostname, limits: Limits::DEFAULT, require_tls: false, submission: false, submission_requires_auth: true }
    }

    /// A submission listener's settings: AUTH offered inside TLS and required for MAIL.
    pub const fn submission(hostname: &'a str) -> ServerConfig<'a> {
        ServerConfig { submission: true, ..ServerConfig::mx(hostname) }
    }
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
    /// STARTTLS while the caller cannot set up TLS now, e.g. its TLS arena is exhausted
    /// (`454 4.7.0`).
    TlsTemporarilyUnavailable,
    /// MAIL on a submission listener, or a foreign recipient from a LAN client, without AUTH
    /// (`530 5.7.0`).
    AuthenticationRequired,
    /// AUTH before TLS (`538 5.7.11`).
    EncryptionRequired,
    /// AUTH with a mechanism other than PLAIN and LOGIN (`504 5.5.4`).
    UnsupportedMechanism,
    /// The client cancelled the AUTH exchange with `*` (`501 5.0.0`).
    AuthenticationCancelled,
    /// An AUTH response that is not base64, or not a valid PLAIN message (`501 5.5.2`).
    AuthenticationSyntax,
    /// An AUTH line over [`AUTH_LINE_LENGTH_MAX`] or credentials over
    /// [`CREDENTIALS_BUFFER_SIZE`] (`500 5.5.6`).
    AuthenticationTooLong,
    /// The caller refused the credentials (`535 5.7.8`, the same for a wrong password and an
    /// unknown user).
    AuthenticationFailed,
    /// The caller could not verify the credentials now (`454 4.7.0`).
    AuthenticationUnavailable,
    /// The caller's throttle refuses AUTH from this client for a while (`421 4.7.0`, closed).
    AuthenticationBlocked,
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

/// The caller's verdict on the credentials of [`Event::Authenticate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthResult {
    /// Valid: `235 2.7.0 Authentication successful`; the user name becomes the session's
    /// authenticated user.
    Accepted,
    /// Invalid (wrong password, unknown user, another authorization identity: one answer for
    /// all): `535 5.7.8 Authentication credentials invalid`, sent once `delay_milliseconds`
    /// have passed (see [`AuthThrottle`](crate::AuthThrottle)); [`ServerSession::deadline`]
    /// says when to poll.
    Refused {
        /// How long to hold the answer back.
        delay_milliseconds: u64,
    },
    /// Cannot be verified now (the user store is unavailable): `454 4.7.0 Temporary
    /// authentication failure`.
    TemporaryFailure,
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
    /// [`ServerSession::tls_established`]. Plaintext after the STARTTLS line was discarded,
    /// and plaintext received until then is dropped unread. If the handshake fails, close the
    /// connection and drop the session (nothing may continue in clear after a `220`).
    StartTls,
    /// Plaintext that followed STARTTLS was thrown away (CVE-2011-0411 style injection).
    PlaintextDiscarded {
        /// Octets discarded.
        octets: usize,
    },
    /// AUTH: verify these credentials (a slow hash: the caller's job), then call
    /// [`ServerSession::authentication_result`]; the session answers only then. The
    /// credentials live in the session and are wiped when the result comes (and when the
    /// session is dropped); copy them only into memory the caller wipes too.
    Authenticate(AuthCredentials<'a>),
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
    /// A `334` was sent; the next line is an AUTH response.
    AuthResponse(AuthStep),
    /// The credentials are with the caller.
    AwaitingAuth,
    /// The caller refused them; the `535` waits until `auth_release`.
    AuthDelay,
    Closed,
}

/// Which AUTH response the session waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthStep {
    /// PLAIN's message.
    Plain,
    /// LOGIN's user name.
    LoginUsername,
    /// LOGIN's password (the user name is in the credentials buffer).
    LoginPassword,
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
    /// A copy of the caller's settings, with the limits clamped to what the session can do.
    config: ServerConfig<'a>,
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
    /// The `Received:` header of the current message during DATA, and the decoded AUTH
    /// credentials during an AUTH exchange: never both, as AUTH is refused inside a
    /// transaction and DATA needs one, so AUTH costs the session no buffer of its own.
    scratch: [u8; SCRATCH_BUFFER_SIZE],
    header_length: usize,
    output: [u8; OUTPUT_BUFFER_SIZE],
    output_length: usize,
    /// Events for the next polls (see [`Queued`]).
    pending: Deque<Queued, 6>,
    /// Octets of decoded AUTH credentials at the start of `scratch`; wiped after the exchange.
    credentials_length: usize,
    auth_mechanism: AuthMechanism,
    /// Where the parts are in `credentials` (start, end).
    authorization_identity: (usize, usize),
    username: (usize, usize),
    password: (usize, usize),
    auth_event_pending: bool,
    auth_release: u64,
    /// The authenticated user's name (length 0: not authenticated).
    user: [u8; USER_NAME_LENGTH_MAX],
    user_length: usize,
    /// The command line just handled carried credentials: wipe it from the input.
    wipe_line: bool,
}

impl<'a> ServerSession<'a> {
    /// A session for a new connection; the greeting is produced by the first `poll`.
    /// The session keeps a copy of `config` (the caller need not keep it); the host name it
    /// borrows must outlive the session.
    pub fn new(config: &ServerConfig<'a>, connection: ConnectionInfo, now: Now) -> ServerSession<'a> {
        let mut limits = config.limits;
        limits.command_line_length = limits.command_line_length.clamp(16, INPUT_BUFFER_SIZE);
        limits.recipients_per_message = limits.recipients_per_message.max(1);
        ServerSession {
            input: [0; INPUT_BUFFER_SIZE],
            input_start: 0,
            input_end: 0,
            core: Core {
                config: ServerConfig { limits, ..*config },
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
                scratch: [0; SCRATCH_BUFFER_SIZE],
                header_length: 0,
                output: [0; OUTPUT_BUFFER_SIZE],
                output_length: 0,
                pending: Deque::new(),
                credentials_length: 0,
                auth_mechanism: AuthMechanism::Plain,
                authorization_identity: (0, 0),
                username: (0, 0),
                password: (0, 0),
                auth_event_pending: false,
                auth_release: 0,
                user: [0; USER_NAME_LENGTH_MAX],
                user_length: 0,
                wipe_line: false,
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
            let old_end = self.input_end;
            self.input_end -= self.input_start;
            self.input_start = 0;
            // No stale copy of handled lines (AUTH responses among them) stays behind.
            self.input[self.input_end..old_end].fill(0);
        }
    }

    /// The monotonic millisecond time at which the session times out if nothing arrives: the
    /// command or data timeout, the session's time limit, or (in DATA) the moment the data
    /// received so far falls below the minimum rate, whichever comes first.
    pub fn deadline(&self) -> Option<u64> {
        let core = &self.core;
        let timeout = match core.phase {
            Phase::Start | Phase::Command | Phase::DiscardLine => core.config.limits.command_timeout_milliseconds,
            Phase::Data => core.config.limits.data_timeout_milliseconds,
            Phase::AuthResponse(_) => core.config.limits.command_timeout_milliseconds,
            Phase::AuthDelay => return Some(core.auth_release),
            _ => return None,
        };
        let mut deadline = core
            .timer_start
            .saturating_add(timeout)
            .min(core.session_start.saturating_add(core.config.limits.session_time_milliseconds));
        if core.phase == Phase::Data && core.config.limits.minimum_data_octets_per_second > 0 {
            // Too slow once elapsed × rate > octets × 1000.
            let allowed = (core.data_octets.saturating_mul(1000) / core.config.limits.minimum_data_octets_per_second).saturating_add(1);
            deadline = deadline.min(core.data_start.saturating_add(allowed.max(core.config.limits.data_rate_grace_milliseconds)));
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

    /// The user the client authenticated as (after AUTH was accepted).
    pub fn authenticated_user(&self) -> Option<&str> {
        self.core.authenticated_user()
    }

    /// After `Authenticate`: the caller's verdict. Produces `235`, `454`, or (after the delay)
    /// `535`, and wipes the credentials.
    pub fn authentication_result(&mut self, result: AuthResult, now: Now) {
        if self.core.phase != Phase::AwaitingAuth {
            return;
        }
        let core = &mut self.core;
        core.phase = Phase::Command;
        core.timer_start = now.monotonic_milliseconds;
        let (start, end) = core.username;
        let name = &core.scratch[start..end];
        let storable = (1..=USER_NAME_LENGTH_MAX).contains(&name.len())
            && core::str::from_utf8(name).is_ok()
            && !name.iter().any(|b| b.is_ascii_control());
        match result {
            AuthResult::Accepted if storable => {
                core.user[..name.len()].copy_from_slice(name);
                core.user_length = name.len();
                core.reply(235, "2.7.0", "Authentication successful");
            }
            // A name the session cannot keep is never provisioned: refused like any other.
            AuthResult::Accepted => core.refuse(535, "5.7.8", "Authentication credentials invalid", RefusalReason::AuthenticationFailed),
            AuthResult::Refused { delay_milliseconds: 0 } => {
                core.refuse(535, "5.7.8", "Authentication credentials invalid", RefusalReason::AuthenticationFailed)
            }
            AuthResult::Refused { delay_milliseconds } => {
                core.phase = Phase::AuthDelay;
                core.auth_release = now.monotonic_milliseconds.saturating_add(delay_milliseconds);
            }
            AuthResult::TemporaryFailure => {
                core.refuse(454, "4.7.0", "Temporary authentication failure", RefusalReason::AuthenticationUnavailable)
            }
        }
        core.wipe_credentials();
    }

    /// After `StartTls`: the handshake succeeded. The session starts over (RFC 3207 4.2:
    /// the client must say EHLO again); nothing from before the handshake is kept.
    pub fn tls_established(&mut self, details: TlsDetails, now: Now) {
        if self.core.phase == Phase::AwaitingTls {
            self.input_start = 0;
            self.input_end = 0;
            self.core.user_length = 0;
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
                return Some(event.event(self.core.connection.session_id));
            }
            match self.core.phase {
                Phase::Start => {
                    self.core.start(now, policy);
                    continue;
                }
                Phase::Closed | Phase::AwaitingTls | Phase::AwaitingCommit => return None,
                Phase::AwaitingAuth => {
                    if !self.core.auth_event_pending {
                        return None;
                    }
                    self.core.auth_event_pending = false;
                    return Some(Event::Authenticate(self.core.credentials()));
                }
                Phase::AuthDelay => {
                    if now.monotonic_milliseconds < self.core.auth_release {
                        return None;
                    }
                    self.core.phase = Phase::Command;
                    self.core.timer_start = now.monotonic_milliseconds;
                    self.core.refuse(535, "5.7.8", "Authentication credentials invalid", RefusalReason::AuthenticationFailed);
                    continue;
                }
                Phase::Data => {
                    if self.core.header_pending {
                        self.core.header_pending = false;
                        return Some(Event::MessageData(&self.core.scratch[..self.core.header_length]));
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
                            // The skipped rest may be credentials (an over-long AUTH line).
                            self.input[self.input_start..self.input_start + index + 2].fill(0);
                            self.input_start += index + 2;
                            self.core.phase = Phase::Command;
                        }
                        None => {
                            let keep = usize::from(window.last() == Some(&b'\r'));
                            let skipped_end = self.input_end - keep;
                            self.input[self.input_start..skipped_end].fill(0);
                            self.input_start = skipped_end;
                            if self.core.timed_out(now) {
                                continue;
                            }
                            return None;
                        }
                    }
                }
                Phase::Command | Phase::AuthResponse(_) => {
                    let available = self.input_end - self.input_start;
                    let pending = &self.input[self.input_start..self.input_end];
                    let auth_line = matches!(self.core.phase, Phase::AuthResponse(_))
                        || pending.get(..5).is_some_and(|verb| verb.eq_ignore_ascii_case(b"AUTH "));
                    let limit = if auth_line { AUTH_LINE_LENGTH_MAX } else { self.core.config.limits.command_line_length };
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
                        if auth_line {
                            self.input[..self.input_start].fill(0);
                            self.core.wipe_credentials();
                            self.core.refuse(500, "5.5.6", "Authentication line too long", RefusalReason::AuthenticationTooLong);
                        } else {
                            self.core.refuse(500, "5.5.2", "Line too long", RefusalReason::CommandLineTooLong);
                        }
                        continue;
                    };
                    let line_start = self.input_start;
                    self.input_start += line_length + 2;
                    self.core.timer_start = now.monotonic_milliseconds;
                    let line = &self.input[line_start..line_start + line_length];
                    let handled = match self.core.phase {
                        Phase::AuthResponse(step) => self.core.auth_response(step, line),
                        _ => self.core.command(line, now, policy),
                    };
                    if core::mem::take(&mut self.core.wipe_line) {
                        self.input[line_start..line_start + line_length + 2].fill(0);
                    }
                    match handled {
                        None => {}
                        Some(CommandEvent::Owned(Queued::StartTls)) => {
                            // CVE-2011-0411: nothing sent before the handshake is a command.
                            let discarded = self.input_end - self.input_start;
                            self.input_start = 0;
                            self.input_end = 0;
                            if discarded > 0 {
                                let _ = self.core.pending.push_back(Queued::PlaintextDiscarded { octets: discarded });
                            }
                            let _ = self.core.pending.push_back(Queued::StartTls);
                        }
                        Some(CommandEvent::Owned(event)) => {
                            let _ = self.core.pending.push_back(event);
                        }
                        Some(event) => {
                            // Re-borrow: the event points into the input line.
                            let line = &self.input[line_start..line_start + line_length];
                            return Some(Core::event_for(event, line, self.core.connection.session_id));
                        }
                    }
                }
            }
        }
    }
}

impl Drop for ServerSession<'_> {
    /// Wipes what may hold credentials: the AUTH buffer and the input.
    fn drop(&mut self) {
        wipe(&mut self.core.scratch);
        wipe(&mut self.input);
    }
}

/// Index of the first CRLF in `bytes`.
fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|pair| pair == b"\r\n")
}

/// An event that waits in the session's queue for the next polls: one that borrows nothing,
/// without the session's id (the same for all, added back when it is handed out). 16 bytes
/// where an [`Event`] takes 48 (the queue holds six).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Queued {
    Refused(Refusal),
    MessageBegin { transaction: u32 },
    MessageComplete { transaction: u32, body_size: u64 },
    TransactionAborted(AbortReason),
    StartTls,
    PlaintextDiscarded { octets: usize },
    Close,
}

impl Queued {
    /// The event of session `session`.
    fn event(self, session: u64) -> Event<'static> {
        match self {
            Queued::Refused(refusal) => Event::Refused(refusal),
            Queued::MessageBegin { transaction } => Event::MessageBegin(TransactionId { session, transaction }),
            Queued::MessageComplete { transaction, body_size } => {
                Event::MessageComplete { id: TransactionId { session, transaction }, body_size }
            }
            Queued::TransactionAborted(reason) => Event::TransactionAborted(reason),
            Queued::StartTls => Event::StartTls,
            Queued::PlaintextDiscarded { octets } => Event::PlaintextDiscarded { octets },
            Queued::Close => Event::Close,
        }
    }
}

/// An event from command handling before it is tied to the input line again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CommandEvent {
    Owned(Queued),
    TransactionStarted,
    RecipientAccepted,
}

impl<'a> Core<'a> {
    fn event_for<'line>(event: CommandEvent, line: &'line [u8], session: u64) -> Event<'line> {
        match event {
            CommandEvent::Owned(event) => event.event(session),
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

    fn client_info(&self) -> ClientInfo<'_> {
        ClientInfo { address: self.connection.client, tls_active: self.tls.is_some(), authenticated_user: self.authenticated_user() }
    }

    fn authenticated_user(&self) -> Option<&str> {
        match self.user_length {
            0 => None,
            length => core::str::from_utf8(&self.user[..length]).ok(),
        }
    }

    /// The credentials of the exchange that just ended, as slices of the buffer.
    fn credentials(&self) -> AuthCredentials<'_> {
        let part = |(start, end): (usize, usize)| &self.scratch[start..end];
        AuthCredentials {
            mechanism: self.auth_mechanism,
            authorization_identity: part(self.authorization_identity),
            username: part(self.username),
            password: part(self.password),
        }
    }

    fn wipe_credentials(&mut self) {
        wipe(&mut self.scratch[..self.credentials_length]);
        self.credentials_length = 0;
        self.auth_event_pending = false;
        (self.authorization_identity, self.username, self.password) = ((0, 0), (0, 0), (0, 0));
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
        let _ = self.pending.push_back(Queued::Refused(Refusal { reason, code }));
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
            if self.errors >= self.config.limits.errors_per_session.max(1) && self.phase != Phase::Closed {
                let hostname = self.hostname();
                self.reply_fmt(format_args!("421 4.7.0 {hostname} Too many errors, closing connection\r\n"));
                let _ = self.pending.push_back(Queued::Refused(Refusal { reason: RefusalReason::TooManyErrors, code: 421 }));
                self.close(AbortReason::SessionClosed);
            }
        }
    }

    /// Ends the session after the output is sent.
    fn close(&mut self, reason: AbortReason) {
        self.wipe_credentials();
        if self.in_transaction || matches!(self.phase, Phase::Data | Phase::AwaitingCommit) {
            let _ = self.pending.push_back(Queued::TransactionAborted(reason));
        }
        self.in_transaction = false;
        self.phase = Phase::Closed;
        let _ = self.pending.push_back(Queued::Close);
    }

    fn end_transaction(&mut self) {
        self.in_transaction = false;
        self.recipients = 0;
    }

    fn abort_transaction(&mut self, reason: AbortReason) {
        if self.in_transaction {
            let _ = self.pending.push_back(Queued::TransactionAborted(reason));
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
            let _ = self.pending.push_back(Queued::Refused(Refusal { reason: RefusalReason::ServiceUnavailable, code: 421 }));
            self.close(AbortReason::SessionClosed);
        }
    }

    /// Closes with `421 4.4.2` if the command or data timeout, the session's time limit or
    /// the minimum data rate says so; returns whether it did.
    fn timed_out(&mut self, now: Now) -> bool {
        let timeout = match self.phase {
            Phase::Command | Phase::DiscardLine | Phase::AuthResponse(_) => self.config.limits.command_timeout_milliseconds,
            Phase::Data => self.config.limits.data_timeout_milliseconds,
            _ => return false,
        };
        let now = now.monotonic_milliseconds;
        let in_data = now.saturating_sub(self.data_start);
        let (reason, text) = if now.saturating_sub(self.session_start) >= self.config.limits.session_time_milliseconds {
            (RefusalReason::SessionTimeLimit, "Session time limit reached")
        } else if self.phase == Phase::Data
            && in_data >= self.config.limits.data_rate_grace_milliseconds
            && u128::from(self.data_octets) * 1000 < u128::from(self.config.limits.minimum_data_octets_per_second) * u128::from(in_data)
        {
            (RefusalReason::DataTooSlow, "Data arriving too slowly")
        } else if now.saturating_sub(self.timer_start) >= timeout {
            (RefusalReason::Timeout, "Timeout")
        } else {
            return false;
        };
        let hostname = self.hostname();
        self.reply_fmt(format_args!("421 4.4.2 {hostname} {text}, closing connection\r\n"));
        let _ = self.pending.push_back(Queued::Refused(Refusal { reason, code: 421 }));
        self.close(AbortReason::SessionClosed);
        true
    }

    fn end_of_data(&mut self) {
        self.phase = Phase::Command;
        match self.decoder.fault() {
            None => {
                self.phase = Phase::AwaitingCommit;
                let _ = self.pending.push_back(Queued::MessageComplete { transaction: self.transaction_number, body_size: self.decoder.body_size() });
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
            Command::Auth { mechanism, initial_response } => return self.auth(mechanism, initial_response, policy),
            Command::StartTls => {
                if self.tls.is_some() {
                    self.refuse(503, "5.5.1", "TLS already active", RefusalReason::TlsAlreadyActive);
                } else if !self.connection.starttls_available {
                    self.refuse(502, "5.5.1", "STARTTLS not available", RefusalReason::StartTlsUnavailable);
                } else if self.greeting == Greeting::None {
                    self.refuse(503, "5.5.1", "Send EHLO first", RefusalReason::BadSequence);
                } else if self.in_transaction {
                    self.refuse(503, "5.5.1", "STARTTLS not permitted during a mail transaction", RefusalReason::BadSequence);
                } else if !policy.start_tls_available(&self.client_info()) {
                    self.refuse(454, "4.7.0", "TLS not available due to temporary reason", RefusalReason::TlsTemporarilyUnavailable);
                } else {
                    self.reply(220, "2.0.0", "Ready to start TLS");
                    self.abort_transaction(AbortReason::StartTls);
                    self.greeting = Greeting::None;
                    self.helo_length = 0;
                    self.phase = Phase::AwaitingTls;
                    return Some(CommandEvent::Owned(Queued::StartTls));
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
                let _ = self.pending.push_back(Queued::Refused(Refusal { reason: RefusalReason::NotSmtp, code: 421 }));
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
        let size = self.config.limits.message_size;
        self.reply_fmt(format_args!("250-{hostname}\r\n250-PIPELINING\r\n250-SIZE {size}\r\n250-8BITMIME\r\n"));
        if self.connection.starttls_available && self.tls.is_none() {
            self.reply_fmt(format_args!("250-STARTTLS\r\n"));
        }
        // RFC 4954 section 4: no plain-text mechanism outside TLS.
        if self.config.submission && self.tls.is_some() && self.user_length == 0 {
            self.reply_fmt(format_args!("250-AUTH PLAIN LOGIN\r\n"));
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
        if self.config.submission && self.config.submission_requires_auth && self.user_length == 0 {
            self.refuse(530, "5.7.0", "Authentication required", RefusalReason::AuthenticationRequired);
            return None;
        }
        if parameters.size.is_some_and(|size| size > self.config.limits.message_size) {
            self.refuse(552, "5.3.4", "Message size exceeds fixed maximum message size", RefusalReason::DeclaredSizeTooBig);
            return None;
        }
        let decision = policy.check_sender(&self.client_info(), reverse_path, parameters.size);
        match decision {
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
                let _ = self.pending.push_back(Queued::Refused(Refusal { reason: RefusalReason::ServiceUnavailable, code: 421 }));
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
        if self.recipients >= self.config.limits.recipients_per_message {
            self.refuse(452, "4.5.3", "Too many recipients", RefusalReason::TooManyRecipients);
            return None;
        }
        let decision = policy.check_recipient(&self.client_info(), forward_path);
        match decision {
            RecipientDecision::Accept => {
                self.recipients += 1;
                self.reply(250, "2.1.5", "Recipient OK");
                return Some(CommandEvent::RecipientAccepted);
            }
            RecipientDecision::UnknownRecipient => {
                self.refuse(550, "5.1.1", "Recipient address rejected: user unknown", RefusalReason::UnknownRecipient)
            }
            RecipientDecision::RelayDenied => self.refuse(550, "5.7.1", "Relay access denied", RefusalReason::RelayDenied),
            RecipientDecision::AuthenticationRequired => {
                self.refuse(530, "5.7.0", "Authentication required", RefusalReason::AuthenticationRequired)
            }
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

    /// `AUTH mechanism [initial-response]` (RFC 4954 section 4).
    fn auth<P: SessionPolicy + ?Sized>(
        &mut self,
        mechanism: AuthMechanism,
        initial_response: Option<&[u8]>,
        policy: &mut P,
    ) -> Option<CommandEvent> {
        // The line may carry a password, whatever the answer.
        self.wipe_line = true;
        if !self.config.submission {
            self.refuse(502, "5.5.1", "Command not implemented", RefusalReason::NotImplemented);
        } else if self.greeting != Greeting::Ehlo {
            self.refuse(503, "5.5.1", "Send EHLO first", RefusalReason::BadSequence);
        } else if self.tls.is_none() {
            self.refuse(538, "5.7.11", "Encryption required for requested authentication mechanism", RefusalReason::EncryptionRequired);
        } else if self.user_length > 0 {
            self.refuse(503, "5.5.1", "Already authenticated", RefusalReason::BadSequence);
        } else if self.in_transaction {
            self.refuse(503, "5.5.1", "AUTH not permitted during a mail transaction", RefusalReason::BadSequence);
        } else if mechanism == AuthMechanism::Unsupported {
            self.refuse(504, "5.5.4", "Unrecognized authentication type", RefusalReason::UnsupportedMechanism);
        } else if !policy.may_authenticate(&self.client_info()) {
            let hostname = self.hostname();
            self.reply_fmt(format_args!("421 4.7.0 {hostname} Too many failed authentication attempts, closing connection\r\n"));
            let _ = self.pending.push_back(Queued::Refused(Refusal { reason: RefusalReason::AuthenticationBlocked, code: 421 }));
            self.close(AbortReason::SessionClosed);
        } else {
            self.auth_mechanism = mechanism;
            self.wipe_credentials();
            let step = if mechanism == AuthMechanism::Plain { AuthStep::Plain } else { AuthStep::LoginUsername };
            match initial_response {
                Some(response) => self.auth_step(step, response),
                None => self.challenge(step),
            }
        }
        None
    }

    /// Sends the `334` for `step` and waits for its response.
    fn challenge(&mut self, step: AuthStep) {
        match step {
            AuthStep::Plain => self.reply_fmt(format_args!("334 \r\n")),
            AuthStep::LoginUsername => self.reply_fmt(format_args!("334 {LOGIN_USERNAME_PROMPT}\r\n")),
            AuthStep::LoginPassword => self.reply_fmt(format_args!("334 {LOGIN_PASSWORD_PROMPT}\r\n")),
        }
        self.phase = Phase::AuthResponse(step);
    }

    /// A line after a `334`.
    fn auth_response(&mut self, step: AuthStep, line: &[u8]) -> Option<CommandEvent> {
        self.wipe_line = true;
        self.phase = Phase::Command;
        if line == b"*" {
            self.wipe_credentials();
            self.refuse(501, "5.0.0", "Authentication cancelled", RefusalReason::AuthenticationCancelled);
        } else {
            self.auth_step(step, line);
        }
        None
    }

    /// Decodes one response into the credentials buffer; asks for the next one or hands the
    /// credentials to the caller.
    fn auth_step(&mut self, step: AuthStep, response: &[u8]) {
        self.phase = Phase::Command;
        let start = self.credentials_length;
        let decoded = decode_base64(response, &mut self.scratch[start..CREDENTIALS_BUFFER_SIZE]).and_then(|length| {
            self.credentials_length = start + length;
            let decoded = &self.scratch[start..start + length];
            match step {
                AuthStep::Plain => split_plain(decoded).map(|(identity, user)| {
                    self.authorization_identity = (0, identity);
                    self.username = (identity + 1, identity + 1 + user);
                    self.password = (identity + 2 + user, start + length);
                    true
                }),
                // LOGIN has no framing of its own: an empty name or password, or a NUL, is malformed.
                _ if length == 0 || decoded.contains(&0) => Err(DecodeError::Malformed),
                AuthStep::LoginUsername => {
                    self.username = (start, start + length);
                    Ok(false)
                }
                AuthStep::LoginPassword => {
                    self.password = (start, start + length);
                    Ok(true)
                }
            }
        });
        match decoded {
            Ok(true) => {
                self.phase = Phase::AwaitingAuth;
                self.auth_event_pending = true;
            }
            Ok(false) => self.challenge(AuthStep::LoginPassword),
            Err(error) => {
                // Wipe whatever was decoded before the error showed.
                self.credentials_length = CREDENTIALS_BUFFER_SIZE;
                self.wipe_credentials();
                match error {
                    DecodeError::Malformed => {
                        self.refuse(501, "5.5.2", "Malformed authentication response", RefusalReason::AuthenticationSyntax)
                    }
                    DecodeError::TooLong => {
                        self.refuse(500, "5.5.6", "Authentication response too long", RefusalReason::AuthenticationTooLong)
                    }
                }
            }
        }
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
            authenticated: self.user_length > 0,
            id: self.transaction_id(),
            unix_seconds: now.unix_seconds,
        };
        match write_received(&fields, &mut self.scratch[..HEADER_BUFFER_SIZE]) {
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
        self.decoder = DataDecoder::new(self.config.limits.text_line_length, self.config.limits.message_size);
        self.header_pending = true;
        Some(CommandEvent::Owned(Queued::MessageBegin { transaction: self.transaction_number }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::{RelayConfig, StandardPolicy};

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|window| window == needle)
    }

    /// Nothing of a password stays in the session once the caller has its verdict: not the
    /// decoded password, not its base64 in the input buffer (where the line was read, nor a
    /// copy left behind by compaction).
    #[test]
    fn credentials_are_wiped_after_the_verdict() {
        let config = ServerConfig::submission("mx.example.org");
        let relay = RelayConfig::new();
        let mut policy = StandardPolicy { relay: &relay, locked: false, spool_free_bytes: 1 << 30, spool_reserve_bytes: 0 };
        let connection = ConnectionInfo {
            client: "192.168.1.2".parse().unwrap(),
            session_id: 1,
            starttls_available: false,
            implicit_tls: Some(TlsDetails { protocol: "TLSv1.3", cipher: "TLS_CHACHA20_POLY1305_SHA256" }),
        };
        let now = Now::new(0, 0);
        for result in [AuthResult::Accepted, AuthResult::Refused { delay_milliseconds: 0 }, AuthResult::TemporaryFailure] {
            let mut session = ServerSession::new(&config, connection, now);
            // "\0alice\0correct horse battery staple", with NOOPs before it so that the line
            // is compacted (moved) once before it is read.
            session.receive(b"EHLO c.example\r\nNOOP\r\nNOOP\r\nAUTH PLAIN AGFsaWNlAGNvcnJlY3QgaG9yc2UgYmF0dGVyeSBz", now);
            while session.poll(now, &mut policy).is_some() {}
            session.receive(b"dGFwbGU=\r\n", now);
            let mut seen = false;
            while let Some(event) = session.poll(now, &mut policy) {
                if let Event::Authenticate(credentials) = event {
                    assert_eq!(credentials.password, b"correct horse battery staple");
                    seen = true;
                    session.authentication_result(result, now);
                }
            }
            assert!(seen);
            for secret in [&b"correct horse"[..], b"AGFsaWNlAGNvcnJlY3Qg", b"YmF0dGVyeSBz", b"dGFwbGU="] {
                assert!(!contains(&session.core.scratch, secret), "{result:?}: decoded password left");
                assert!(!contains(&session.input, secret), "{result:?}: base64 left in the input");
            }
            assert_eq!(session.authenticated_user().is_some(), result == AuthResult::Accepted);
        }
    }

    /// RFC 3207 4.2: after the handshake nothing of the EHLO before it is kept (not even the
    /// name, which no command could use before the next EHLO replaces it).
    #[test]
    fn the_handshake_forgets_the_earlier_ehlo_name() {
        let config = ServerConfig::mx("mx.example.org");
        let relay = RelayConfig::new();
        let mut policy = StandardPolicy { relay: &relay, locked: false, spool_free_bytes: 1 << 30, spool_reserve_bytes: 0 };
        let connection = ConnectionInfo { client: "203.0.113.2".parse().unwrap(), session_id: 1, starttls_available: true, implicit_tls: None };
        let now = Now::new(0, 0);
        let mut session = ServerSession::new(&config, connection, now);
        session.receive(b"EHLO old-name.example\r\nSTARTTLS\r\n", now);
        while session.poll(now, &mut policy).is_some() {}
        session.tls_established(TlsDetails { protocol: "TLSv1.3", cipher: "TLS_CHACHA20_POLY1305_SHA256" }, now);
        assert_eq!((session.core.greeting, session.core.helo_length), (Greeting::None, 0));
    }
}
