//! The MX on port 25 and the LAN's submission ports 587 and 465: SMTP sessions (homemx-smtp's
//! sans-I/O server) wired to embassy-net sockets by the one driver loop (`homemx_exchange`: the
//! session lends its own input buffer, read into until its deadline) and to the encrypted
//! spool. A message is committed to flash before the session answers `250`; while the
//! device is locked or unconfigured every session gets 4xx (the provider's backup MX keeps
//! the mail).
//!
//! TLS ([`crate::inbound_tls`]): STARTTLS is offered on 25 (opportunistic: the sender decides)
//! and 587 once the device has a certificate; 465 is TLS from the first byte. AUTH PLAIN and
//! LOGIN are offered on 587 and 465 inside TLS only, checked against the configured users'
//! salted hashes (`homemx_credentials`, stepped so other tasks run) with growing delays per
//! address after failures, a block, and an alert ([`AUTH_THROTTLE`]); the answer to an
//! unknown user is the answer to a wrong password, after as much work.
//!
//! Who may send to other domains (through the smarthost, see [`crate::delivery`]): a client
//! that authenticated on 587/465, and a client in the LAN prefixes by its address alone only if
//! the owner opted in (`lan_relay_without_auth`). Within limits: recipients per message and
//! size from the configured limits, and hourly message quotas per address and per user
//! (`450 4.7.1` beyond them, with a log event). Everyone else gets the MX: only our domains
//! and known recipients; 587 and 465 take LAN clients only.
//!
//! Owns: the MX, submission and spare listener tasks with their socket buffers, the session
//! pools and the slots their sessions run in ([`session_slot`]) with the one slot they share for
//! their large store reads ([`STORE_READS`]), the transaction pool, the hourly quotas, the AUTH
//! throttle. Calls: `alerts`, `channels`, `event_log`, `inbound_tls`, `instrument`,
//! `mail_settings`, `mail_status`, `network`, `stack`, `store`, `wall_clock`.

use core::cell::{RefCell, UnsafeCell};
use core::net::IpAddr;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use embassy_net::tcp::TcpSocket;
use embassy_executor::Spawner;
use embassy_net::{IpAddress, Stack};
use static_cell::ConstStaticCell;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time::{Duration, Instant, Timer};
use embedded_io_async::Write as _;
use homemx_exchange::{fill, send, Filled};
use homemx_credentials::{Derivation, Progress, Verdict, Verifier, ITERATIONS_PER_STEP};
use homemx_smtp::policy::{ClientInfo, RecipientDecision, SenderDecision, SessionPolicy};
use homemx_smtp::quota::{QuotaDecision, SubmissionQuota};
use homemx_smtp::{
    AuthAdmission, AuthCredentials, AuthResult, AuthThrottle, CommitResult, ConnectionCounter, ConnectionInfo, ConnectionRefusal, Event,
    ForwardPath, Limits, ReversePath, ServerConfig, ServerSession, ThrottleSettings,
};
use homemx_status::alert::AlertKind;
use homemx_spool::{EnvelopeFields, MessageWriter, SpoolError, MAX_RECIPIENTS};

use crate::inbound_tls::{HandshakeFailure, InboundStream, TlsPermit};
use homemx_tls::TlsServer;
use alloc::boxed::Box;
use crate::instrument::{Measurement, Operation};
use crate::network::mail_clock as now;

/// Port 25 (the MX) and the submission ports 587 (STARTTLS) and 465 (implicit TLS), LAN
/// clients only.
use homemx_smtp::{SMTP_PORT, SUBMISSIONS_PORT, SUBMISSION_PORT};

/// Sessions served at once on port 25 (one listener task each, with 3 KiB of socket buffers;
/// the session itself runs in a session slot, about 4.3 KB on the H5, taken when it is
/// admitted: see [`SessionPool`]).
pub const MX_SESSIONS: usize = crate::bsp::SIZING.mx_sessions;
/// Sessions served at once on ports 587 and 465 together (each port has this many listeners,
/// each with 1.5 KiB of socket buffers).
pub const SUBMISSION_SESSIONS: usize = crate::bsp::SIZING.submission_sessions;
/// Transactions (an envelope being received, then its spool writer: about 4.1 KB each) open at
/// once over both ports: a session takes one at `MAIL FROM` and gives it back when the
/// transaction ends, so a session that is idle, greeting or refused costs only its socket and
/// parser. No slot free: `452 4.3.1` (the sender retries). Messages are written to the spool
/// one chunk at a time under the vault's lock anyway, so more slots would not be faster.
pub const TRANSACTION_SLOTS: usize = crate::bsp::SIZING.transaction_slots;
/// LAN clients whose hourly quota is tracked at once (more are refused with `450` until a
/// window ends).
const QUOTA_CLIENTS: usize = 16;
/// Users whose hourly quota is tracked at once (as many as can be configured).
const QUOTA_USERS: usize = homemx_wire::validate::MAX_USERS;
/// Addresses whose failed AUTHs are counted at once (the oldest is forgotten for a new one).
const AUTH_THROTTLE_CLIENTS: usize = 16;
/// Sessions one client address may hold at once.
const SESSIONS_PER_CLIENT: u16 = 2;

mod session_slot;

use session_slot::{Lease, SharedSlot, Slots};

/// The admission of one port's sessions: an admitted session takes one of the session slots
/// ([`SESSION_SLOTS`], as many as both pools admit, so an admitted session always finds one),
/// and its whole serving future lives there ([`session_slot`]), not in the listener.
struct SessionPool {
    counter: Mutex<CriticalSectionRawMutex, RefCell<ConnectionCounter<MX_SESSIONS>>>,
}

impl SessionPool {
    const fn new(sessions: usize) -> Self {
        SessionPool { counter: Mutex::new(RefCell::new(ConnectionCounter::new(sessions as u16, SESSIONS_PER_CLIENT))) }
    }

    /// Admits a session of `client` and gives it a slot; the permit closes it when dropped.
    fn try_open(&'static self, client: IpAddr) -> Result<SessionPermit, ConnectionRefusal> {
        self.counter.lock(|counter| counter.borrow_mut().try_open(client))?;
        let Some(lease) = SESSION_SLOTS.take() else {
            // One slot per admitted session: this is a bug, answered like a full pool.
            defmt::error!("mx: an admitted session found no free session slot");
            self.close(client);
            return Err(ConnectionRefusal::TooManySessions);
        };
        Ok(SessionPermit { pool: self, client, lease })
    }

    fn close(&self, client: IpAddr) {
        self.counter.lock(|counter| counter.borrow_mut().close(client));
    }
}

/// An admitted session: its place in the port's count and its slot, both given back when
/// dropped.
struct SessionPermit {
    pool: &'static SessionPool,
    client: IpAddr,
    lease: Lease<SESSION_FUTURE_SIZE>,
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        self.pool.close(self.client);
    }
}

/// Bytes of the future that serves one client ([`serve`]), the size of a session slot.
const SESSION_FUTURE_SIZE: usize = session_slot::output_size(serve);

/// Where the admitted sessions of both pools run: one slot for each session they admit.
static SESSION_SLOTS: Slots<SESSION_FUTURE_SIZE, { MX_SESSIONS + SUBMISSION_SESSIONS }> = Slots::new();

/// The session's awaits that read the store and whose futures are much larger than its
/// others (about 1.2 KB on the H5, against 0.6 KB at most): the AUTH user lookup
/// (`store::mail_user`) and the TLS configuration's rebuild after a change of identity
/// (`inbound_tls::server_config`). Both hold the store's lock, so they ran one at a time
/// anyway: they take turns in one shared slot instead of making every session slot as large.
static STORE_READS: SharedSlot<STORE_READ_SIZE> = SharedSlot::new();

/// Bytes of the larger of the two futures run in [`STORE_READS`].
const STORE_READ_SIZE: usize = {
    let lookup = session_slot::output_size(crate::store::mail_user);
    let configuration = session_slot::output_size(crate::inbound_tls::server_config);
    if lookup > configuration {
        lookup
    } else {
        configuration
    }
};

/// Port 25's admission (the WAN's MX and LAN clients on 25) and the submission port's:
/// separate, so that clients holding every MX session cannot lock the LAN out of submission.
static MX_POOL: SessionPool = SessionPool::new(MX_SESSIONS);
static SUBMISSION_POOL: SessionPool = SessionPool::new(SUBMISSION_SESSIONS);

fn pool(port: u16) -> &'static SessionPool {
    if is_submission(port) {
        &SUBMISSION_POOL
    } else {
        &MX_POOL
    }
}

/// Whether `port` is a submission port (587, 465): LAN clients, AUTH.
fn is_submission(port: u16) -> bool {
    port == SUBMISSION_PORT || port == SUBMISSIONS_PORT
}
static SESSION_NUMBER: AtomicU32 = AtomicU32::new(1);

/// The hourly message quotas of the LAN clients: per address, and per authenticated user.
static QUOTA: Mutex<CriticalSectionRawMutex, RefCell<SubmissionQuota<QUOTA_CLIENTS, QUOTA_USERS>>> =
    Mutex::new(RefCell::new(SubmissionQuota::new()));

/// Failed AUTHs per address: growing delays, a block, the alert.
static AUTH_THROTTLE: Mutex<CriticalSectionRawMutex, RefCell<AuthThrottle<AUTH_THROTTLE_CLIENTS>>> =
    Mutex::new(RefCell::new(AuthThrottle::new(ThrottleSettings::DEFAULT)));

/// Whether `client` may submit another message this hour: `per_address` from its address,
/// `per_user` as its user if it authenticated.
fn quota_allows(client: &ClientInfo<'_>, per_address: u16, per_user: u16) -> bool {
    let now = crate::network::uptime_seconds();
    match QUOTA.lock(|quota| quota.borrow_mut().check(client, per_address, per_user, now)) {
        QuotaDecision::Allowed => true,
        // The session's refusal event logs it.
        QuotaDecision::Exhausted => false,
        QuotaDecision::TableFull => {
            crate::event_warning!("submission: {} refused, the hourly quota of {} other LAN clients is running", client.address, QUOTA_CLIENTS);
            false
        }
    }
}

/// Counts a message `client` submitted against its hourly quotas.
fn count_for_quota(client: &ClientInfo<'_>) {
    let now = crate::network::uptime_seconds();
    if !QUOTA.lock(|quota| quota.borrow_mut().record(client, now)) {
        crate::event_warning!("submission: a message from {} could not be counted (quota table full)", client.address);
    }
}

fn is_lan_client(client: IpAddr) -> bool {
    crate::mail_settings::read(|current| current.is_some_and(|settings| settings.relay.is_lan_client(client)))
}
/// The policy a session asks: the configured relay rules, the lock state and spool space, a
/// free transaction slot, a TLS permit and the AUTH throttle. Holds the session's slot while a
/// transaction is open, and its TLS permit from `STARTTLS` on.
struct DevicePolicy {
    slot: Option<TransactionSlot>,
    /// Taken at `STARTTLS` (the session then answers `220`), used by the handshake.
    tls_permit: Option<TlsPermit>,
    /// The authenticated user's own hourly limit, if the configuration sets one.
    user_messages_per_hour: Option<u16>,
}

impl SessionPolicy for DevicePolicy {
    fn service_available(&mut self, _client: &ClientInfo) -> bool {
        crate::mail_settings::read(|current| current.is_some())
    }

    fn check_sender(&mut self, client: &ClientInfo, sender: &ReversePath<'_>, declared_size: Option<u64>) -> SenderDecision {
        let decision = with_standard_policy(|policy| policy.check_sender(client, sender, declared_size)).unwrap_or(SenderDecision::ServiceUnavailable);
        if decision == SenderDecision::Accept && (is_lan_client(client.address) || client.authenticated_user.is_some()) {
            let per_address = crate::mail_settings::read(|current| {
                current.map_or(crate::mail_settings::DEFAULT_MESSAGES_PER_CLIENT_PER_HOUR, |settings| settings.messages_per_client_per_hour)
            });
            let per_user = self.user_messages_per_hour.unwrap_or(per_address);
            if !quota_allows(client, per_address, per_user) {
                return SenderDecision::QuotaExceeded;
            }
        }
        if decision == SenderDecision::Accept && self.slot.is_none() {
            self.slot = TransactionSlot::take();
            if self.slot.is_none() {
                crate::event_warning!("mx: all {} transaction slots busy, MAIL FROM of {} deferred (452)", TRANSACTION_SLOTS, client.address);
                return SenderDecision::InsufficientStorage;
            }
        }
        decision
    }

    fn check_recipient(&mut self, client: &ClientInfo, recipient: &ForwardPath<'_>) -> RecipientDecision {
        with_standard_policy(|policy| policy.check_recipient(client, recipient)).unwrap_or(RecipientDecision::ServiceUnavailable)
    }

    fn start_tls_available(&mut self, client: &ClientInfo<'_>) -> bool {
        if self.tls_permit.is_none() {
            self.tls_permit = TlsPermit::take();
        }
        if self.tls_permit.is_none() {
            crate::event_warning!("mx: all {} TLS sessions busy, STARTTLS of {} refused (454)", crate::inbound_tls::TLS_SESSIONS, client.address);
        }
        self.tls_permit.is_some()
    }

    fn may_authenticate(&mut self, client: &ClientInfo<'_>) -> bool {
        let now = now().monotonic_milliseconds;
        match AUTH_THROTTLE.lock(|throttle| throttle.borrow_mut().admit(client.address, now)) {
            AuthAdmission::Permitted => true,
            AuthAdmission::Blocked { until_milliseconds } => {
                crate::event_warning!(
                    "submission: AUTH from {} refused, blocked for {} s after repeated failures",
                    client.address,
                    until_milliseconds.saturating_sub(now) / 1000
                );
                false
            }
        }
    }
}

/// Runs `decide` with the standard MX policy over the settings in force; `None` while locked
/// or unconfigured.
fn with_standard_policy<T>(decide: impl FnOnce(&mut homemx_smtp::StandardPolicy<'_>) -> T) -> Option<T> {
    crate::mail_settings::read(|settings| {
        let settings = settings?;
        let mut policy = homemx_smtp::StandardPolicy {
            relay: &settings.relay,
            locked: false,
            spool_free_bytes: crate::store::spool_free_bytes(),
            spool_reserve_bytes: settings.spool_reserve_bytes,
        };
        Some(decide(&mut policy))
    })
}

/// The envelope of the transaction in progress, then its spool writer (about 4.1 KB).
///
/// The envelope is kept as the spool will encode it ([`EnvelopeFields`], 4,090 B): the reverse
/// path and the recipients back to back, each with its length. The spool's bound on that
/// encoding (4 KiB, at most [`homemx_spool::MAX_RECIPIENTS`] = 128 recipients) is the one
/// bound, checked as each recipient is added (one beyond it fails the transaction, as the
/// spool would have refused the envelope at DATA): RFC 5321's minimums (100 recipients,
/// 256-octet paths) are covered by the count, and 100 recipients of 256 octets never fitted
/// the spool anyway, so a separate 256-byte reverse-path buffer and a 128-entry table of
/// recipient ends, sized for the worst count and length at once, held nothing the spool
/// could take (they cost 528 B more per slot).
///
/// The envelope and the writer share their room ([`Stage`]): the spool copies the envelope
/// into the message when the writer begins, so from DATA on only the writer is needed (it
/// held both, 1,088 B more per slot).
struct Transaction {
    stage: Stage,
    /// `SIZE=` from MAIL FROM, if given.
    declared_size: Option<u64>,
    /// Something of the transaction was refused or lost: the message is not committed.
    failed: bool,
}

/// What a transaction holds: its envelope until DATA, then the message being written.
enum Stage {
    /// From MAIL FROM to DATA.
    Envelope(EnvelopeFields),
    /// From DATA on: the spool message being written (about 1 KB; `None` when the spool
    /// refused it or once it was committed or aborted) and the envelope's recipient count.
    Message { writer: Option<MessageWriter>, recipients: usize },
}

impl Transaction {
    const fn new() -> Self {
        Transaction { stage: Stage::Envelope(EnvelopeFields::new()), declared_size: None, failed: false }
    }

    /// Empties it in place for a new transaction (no 4 KB temporary in the session's frame).
    /// Its writer, if any, was committed or aborted before.
    fn clear(&mut self) {
        match &mut self.stage {
            Stage::Envelope(envelope) => {
                envelope.start(b"");
            }
            Stage::Message { .. } => self.stage_envelope(),
        }
        self.declared_size = None;
        self.failed = false;
    }

    /// Turns a finished message's stage back into an empty envelope, in a frame of its own:
    /// if the 4 KB envelope is built on the stack before it is moved, that copy is gone again
    /// before the session's next await.
    #[inline(never)]
    fn stage_envelope(&mut self) {
        self.stage = Stage::Envelope(EnvelopeFields::new());
    }

    /// The envelope, until DATA.
    fn envelope(&mut self) -> Option<&mut EnvelopeFields> {
        match &mut self.stage {
            Stage::Envelope(envelope) => Some(envelope),
            Stage::Message { .. } => None,
        }
    }

    /// The message being written, from DATA on.
    fn writer(&mut self) -> Option<&mut MessageWriter> {
        match &mut self.stage {
            Stage::Message { writer, .. } => writer.as_mut(),
            Stage::Envelope(_) => None,
        }
    }

    /// The message being written, taken out to be committed or aborted.
    fn take_writer(&mut self) -> Option<MessageWriter> {
        match &mut self.stage {
            Stage::Message { writer, .. } => writer.take(),
            Stage::Envelope(_) => None,
        }
    }

    /// The envelope's recipients (counted when the message began).
    fn recipient_count(&self) -> usize {
        match &self.stage {
            Stage::Envelope(envelope) => envelope.recipient_count(),
            Stage::Message { recipients, .. } => *recipients,
        }
    }
}

/// One slot of the transaction pool.
struct PoolSlot {
    taken: AtomicBool,
    transaction: UnsafeCell<Transaction>,
}

// SAFETY: the transaction is reached only through the one `TransactionSlot` that won `taken`
// (compare-exchange), until that slot is dropped.
unsafe impl Sync for PoolSlot {}

static TRANSACTIONS: [PoolSlot; TRANSACTION_SLOTS] =
    [const { PoolSlot { taken: AtomicBool::new(false), transaction: UnsafeCell::new(Transaction::new()) } }; TRANSACTION_SLOTS];

/// A transaction slot taken from the pool; given back when dropped.
struct TransactionSlot {
    slot: &'static PoolSlot,
}

impl TransactionSlot {
    /// A free slot, emptied; `None` when all are taken.
    fn take() -> Option<Self> {
        let slot = TRANSACTIONS.iter().find(|slot| slot.taken.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok())?;
        let mut taken = TransactionSlot { slot };
        taken.clear();
        Some(taken)
    }
}

impl Deref for TransactionSlot {
    type Target = Transaction;
    fn deref(&self) -> &Transaction {
        // SAFETY: this slot won `taken` (see `PoolSlot`).
        unsafe { &*self.slot.transaction.get() }
    }
}

impl DerefMut for TransactionSlot {
    fn deref_mut(&mut self) -> &mut Transaction {
        // SAFETY: this slot won `taken` (see `PoolSlot`), and `&mut self` is unique.
        unsafe { &mut *self.slot.transaction.get() }
    }
}

impl Drop for TransactionSlot {
    fn drop(&mut self) {
        self.slot.taken.store(false, Ordering::Release);
    }
}

fn client_address(address: IpAddress) -> IpAddr {
    match address {
        IpAddress::Ipv4(v4) => IpAddr::V4(v4),
    }
}

/// How long a refused client has to close after our `421` before the connection is reset.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);

/// Octets a port 25 session listener buffers from and for its client. The receive buffer is
/// the TCP window: what a sender may have in flight per round trip, and port 25's senders are
/// on the WAN, tens of milliseconds away.
const MX_RECEIVE_BUFFER: usize = 2048;
const MX_TRANSMIT_BUFFER: usize = 1024;
/// Octets a submission (587, 465) session listener buffers from and for its client: half of
/// port 25's. Those ports take LAN clients only, a millisecond or less away, and a window
/// carries its size per round trip: 1 KiB per LAN round trip is still more than 1 MB/s,
/// many times what port 25's 2 KiB carries over a WAN round trip (and the TLS records larger
/// than the buffers pass in pieces either way). 6 KiB less RAM for the 4 listeners.
const SUBMISSION_RECEIVE_BUFFER: usize = 1024;
const SUBMISSION_TRANSMIT_BUFFER: usize = 512;

/// Listeners of the submission ports: 587's and 465's.
const SUBMISSION_LISTENERS: usize = 2 * SUBMISSION_SESSIONS;

type MxBuffers = [([u8; MX_RECEIVE_BUFFER], [u8; MX_TRANSMIT_BUFFER]); MX_SESSIONS];
type SubmissionBuffers = [([u8; SUBMISSION_RECEIVE_BUFFER], [u8; SUBMISSION_TRANSMIT_BUFFER]); SUBMISSION_LISTENERS];
type SpareBuffers = [([u8; 64], [u8; 128]); SPARE_LISTENERS];

static MX_BUFFERS: ConstStaticCell<MxBuffers> = ConstStaticCell::new([([0; MX_RECEIVE_BUFFER], [0; MX_TRANSMIT_BUFFER]); MX_SESSIONS]);
static SUBMISSION_BUFFERS: ConstStaticCell<SubmissionBuffers> =
    ConstStaticCell::new([([0; SUBMISSION_RECEIVE_BUFFER], [0; SUBMISSION_TRANSMIT_BUFFER]); SUBMISSION_LISTENERS]);
static SPARE_BUFFERS: ConstStaticCell<SpareBuffers> = ConstStaticCell::new([([0; 64], [0; 128]); SPARE_LISTENERS]);

/// Spare listeners of port 25: they take the clients that arrive while every session listener
/// of the port is busy (serving, or refusing a client over its limit), answer `421 4.7.0` and
/// close, so that a busy MX answers in SMTP rather than with a TCP reset. A burst beyond them
/// waits for its SYN's retry (the resets are dropped, see [`crate::network`]). About 700 bytes
/// of RAM each; the boards have four: a spare is free again a moment after its `421` (the
/// client hangs up, or the grace ends), so a burst of 64 connections from one address still
/// gets 2 × `220` and 62 × `421` and no reset (the `mx_sessions` e2e test), with eight 2.8 KB
/// more.
const MX_SPARE_LISTENERS: usize = crate::bsp::SIZING.mx_spare_listeners;
/// Spare listeners of the submission port (the LAN's few clients).
const SUBMISSION_SPARE_LISTENERS: usize = crate::bsp::SIZING.submission_spare_listeners;
/// All spare listeners.
pub const SPARE_LISTENERS: usize = MX_SPARE_LISTENERS + SUBMISSION_SPARE_LISTENERS;

/// Creates the listening sockets of the mail ports and spawns their tasks. Called before
/// anything else uses the stack: smoltcp gives a new connection to the first listening socket
/// in its table, so the session listeners, created first, are always preferred to the spares.
pub fn spawn_listeners(spawner: Spawner, stack: Stack<'static>) {
    for (task_number, (receive, transmit)) in MX_BUFFERS.take().iter_mut().enumerate() {
        spawner.spawn(mx_task(TcpSocket::new(stack, receive, transmit), task_number as u8).unwrap());
    }
    for (task_number, (receive, transmit)) in SUBMISSION_BUFFERS.take().iter_mut().enumerate() {
        // The first half on 587, the second on 465.
        let port = if task_number < SUBMISSION_SESSIONS { SUBMISSION_PORT } else { SUBMISSIONS_PORT };
        spawner.spawn(submission_task(TcpSocket::new(stack, receive, transmit), port, task_number as u8).unwrap());
    }
    for (index, (receive, transmit)) in SPARE_BUFFERS.take().iter_mut().enumerate() {
        let port = if index < MX_SPARE_LISTENERS { SMTP_PORT } else { SUBMISSION_PORT };
        spawner.spawn(spare_listener_task(TcpSocket::new(stack, receive, transmit), port).unwrap());
    }
}

#[embassy_executor::task(pool_size = MX_SESSIONS)]
async fn mx_task(socket: TcpSocket<'static>, task_number: u8) -> ! {
    listen(socket, SMTP_PORT, task_number).await
}

#[embassy_executor::task(pool_size = 2 * SUBMISSION_SESSIONS)]
async fn submission_task(socket: TcpSocket<'static>, port: u16, task_number: u8) -> ! {
    listen(socket, port, task_number).await
}

/// A spare listener of `port` (see [`MX_SPARE_LISTENERS`]).
#[embassy_executor::task(pool_size = SPARE_LISTENERS)]
async fn spare_listener_task(mut socket: TcpSocket<'static>, port: u16) -> ! {
    loop {
        let Some(peer) = accept(&mut socket, port, Duration::from_secs(10)).await else {
            continue;
        };
        crate::event_warning!("mx: refused {} on port {} ({:?})", peer.addr, port, ConnectionRefusal::TooManySessions);
        let _ = socket.write_all(ConnectionRefusal::TooManySessions.reply()).await;
        crate::network::release_after_answer(&mut socket, REFUSAL_GRACE).await;
    }
}

/// Serves `port` with `socket` (for the task's life: it keeps its place in the stack's table).
async fn listen(mut socket: TcpSocket<'static>, port: u16, task_number: u8) -> ! {
    loop {
        let Some(peer) = accept(&mut socket, port, Duration::from_secs(310)).await else {
            continue;
        };
        let client = client_address(peer.addr);
        if is_submission(port) && !is_lan_client(client) {
            crate::event_warning!("submission: refused {} on port {} (not in the LAN prefixes)", peer.addr, port);
            // Port 465 speaks TLS from the first byte: no clear-text reply there.
            if port == SUBMISSION_PORT {
                let _ = socket.write_all(b"554 5.7.1 Submission is only for the LAN; this is not a relay\r\n").await;
            }
            crate::network::release(&mut socket).await;
            continue;
        }
        match pool(port).try_open(client) {
            Err(refusal) => {
                crate::event_warning!("mx: refused {} on port {} ({:?})", peer.addr, port, refusal);
                let _ = socket.write_all(refusal.reply()).await;
                crate::network::release_after_answer(&mut socket, REFUSAL_GRACE).await;
                continue;
            }
            Ok(mut permit) => {
                // The socket goes into the session's slot with the session and comes back
                // when it ends.
                socket = permit.lease.run(move || serve(socket, client, port, task_number)).await;
            }
        }
        crate::network::release(&mut socket).await;
    }
}

/// Listens on `port` with `socket` (closed) until a client connects; `None` (the socket
/// released again) when that failed.
async fn accept(socket: &mut TcpSocket<'_>, port: u16, timeout: Duration) -> Option<embassy_net::IpEndpoint> {
    socket.set_timeout(Some(timeout));
    if socket.accept(port).await.is_err() {
        // The socket was not closed: close it, and wait a moment rather than spin on it.
        crate::network::release(socket).await;
        Timer::after_millis(10).await;
        return None;
    }
    let peer = socket.remote_endpoint();
    if peer.is_none() {
        crate::network::release(socket).await;
    }
    peer
}

/// The timer [`fill`] waits for a session's deadline with (monotonic milliseconds, the
/// clock of [`now`]).
fn deadline_timer(deadline: u64) -> Timer {
    Timer::at(Instant::from_millis(deadline))
}

/// The instruction-count measurement of the next message on `port` (port 25 only: the MX),
/// in clear or inside TLS.
fn measure_message(port: u16, tls: bool) -> Option<Measurement> {
    (port == SMTP_PORT).then(|| crate::instrument::begin(if tls { Operation::MxMessageTls } else { Operation::MxMessage }))
}

/// After a message's reply went out: ends its measurement if it was committed (`250`),
/// cancels it otherwise.
fn finish_message(current: Option<Measurement>, committed: bool) {
    match current {
        Some(measurement) if committed => measurement.end(),
        other => drop(other),
    }
}

/// Serves one client on `socket` (moved in, given back when the session ends, to be released
/// by the caller). Runs in a session slot ([`SessionPool`]): its arguments own everything
/// (no borrow), so the slot's size is a constant. (One function, not a wrapper around one
/// that borrows the socket: the wrapper's own state cost each slot 64 bytes of alignment.)
async fn serve(mut socket: TcpSocket<'static>, client: IpAddr, port: u16, task_number: u8) -> TcpSocket<'static> {
    'session: {
        let socket = &mut socket;
        // Port 465: TLS from the first byte, admitted by a permit like STARTTLS.
        let mut implicit_permit = None;
        let mut implicit_tls = None;
        let mut stream = if port == SUBMISSIONS_PORT {
            let Some(permit) = TlsPermit::take() else {
                crate::event_warning!("submission: all {} TLS sessions busy, {} refused on port 465 (421)", crate::inbound_tls::TLS_SESSIONS, client);
                // In clear, as the contract asks; a TLS client sees a failed handshake.
                let _ = socket.write_all(b"421 4.7.0 TLS not available now, try again later\r\n").await;
                break 'session;
            };
            let permit = implicit_permit.insert(permit);
            match tls_handshake(socket, permit).await {
                Ok(server) => {
                    implicit_tls = Some(crate::inbound_tls::details(&server));
                    InboundStream::Tls(socket, server)
                }
                Err(failure) => {
                    crate::event_warning!("submission: TLS handshake with {} on port 465 failed: {}", client, failure.describe());
                    break 'session;
                }
            }
        } else {
            InboundStream::Plain(socket)
        };
        // Taken from the policy at STARTTLS; outlives the stream that borrows its buffers.
        let mut starttls_permit: Option<TlsPermit> = None;
        serve_session(&mut stream, &mut starttls_permit, client, port, task_number, implicit_tls).await;
        stream.close().await;
    }
    socket
}

/// The session on `stream`, switched to TLS at STARTTLS with the permit the policy took
/// (moved into `starttls_permit`, whose buffers the TLS stream then borrows).
async fn serve_session<'s, 'b>(
    stream: &mut InboundStream<'s, 'b>,
    starttls_permit: &'b mut Option<TlsPermit>,
    client: IpAddr,
    port: u16,
    task_number: u8,
    implicit_tls: Option<homemx_smtp::TlsDetails>,
) {
    // From the session's start to the first message's `250`, then from each `250` to the
    // next; what is open when the session ends is cancelled (see crate::instrument).
    let mut measurement = measure_message(port, false);
    // Set when a message's reply (committed or not) is queued and not yet sent.
    let mut replied: Option<bool> = None;
    let lan = is_lan_client(client);
    let (host_name, message_size, lan_recipients, requires_auth, lan_relay_without_auth) = crate::mail_settings::read(|current| match current {
        Some(settings) => (
            settings.host_name.clone(),
            settings.message_size,
            settings.max_recipients,
            settings.submission_requires_auth,
            settings.relay.lan_relay_without_auth(),
        ),
        None => (heapless::String::try_from("homemx").unwrap_or_default(), crate::mail_settings::DEFAULT_MESSAGE_SIZE, MAX_RECIPIENTS, true, false),
    });
    // The world gets RFC 5321's 100 recipients and more; a LAN client the owner's limit.
    let recipients_per_message = if lan { lan_recipients } else { MAX_RECIPIENTS };
    let limits = Limits { recipients_per_message, message_size, ..Limits::DEFAULT };
    let submission = is_submission(port);
    // On 587/465 MAIL waits for AUTH, unless the owner lets LAN addresses relay without it.
    let submission_requires_auth = requires_auth && !(lan && lan_relay_without_auth);
    let session_id = SESSION_NUMBER.fetch_add(1, Ordering::Relaxed) as u64;
    // STARTTLS is offered once the device has a certificate to present.
    let starttls_available = implicit_tls.is_none() && crate::inbound_tls::available();
    let connection = ConnectionInfo { client, session_id, starttls_available, implicit_tls };
    // The session keeps its own copy of the settings: none is held here beside it.
    let mut session = {
        let config = ServerConfig { hostname: host_name.as_str(), limits, require_tls: false, submission, submission_requires_auth };
        ServerSession::new(&config, connection, now())
    };
    let mut policy = DevicePolicy { slot: None, tls_permit: None, user_messages_per_hour: None };
    // Used once (a second STARTTLS is refused by the session): moved out, not reborrowed.
    let mut starttls_permit = Some(starttls_permit);
    defmt::info!("mx[{}]: session {=u64} from {} on port {=u16}", task_number, session_id, defmt::Debug2Format(&client), port);
    loop {
        let Some(event) = session.poll(now(), &mut policy) else {
            if !send(stream, &mut session).await {
                break;
            }
            if let Some(committed) = replied.take() {
                finish_message(measurement.take(), committed);
                measurement = measure_message(port, session.tls_active());
            }
            if session.is_closed() {
                break;
            }
            // Reads into the session's own input buffer (no copy), until its deadline.
            match fill(stream, &mut session, now, deadline_timer).await {
                // The session has the bytes; the next poll handles them.
                Filled::Octets(_) => {}
                // The next poll answers `421 4.4.2` and closes.
                Filled::DeadlinePassed => {}
                Filled::Ended => {
                    defmt::info!("mx[{}]: session {=u64}: the client closed the connection", task_number, session_id);
                    break;
                }
                Filled::InputFull => {
                    // The session polls its input before it asks for more, so this is a bug.
                    defmt::error!("mx: session input full while waiting for input");
                    break;
                }
            }
            continue;
        };
        match event {
            Event::Refused(refusal) => {
                crate::event_warning!("mx: refused {:?} from {} ({})", refusal.reason, client, refusal.code);
            }
            Event::TransactionStarted { reverse_path, parameters } => {
                // The policy took the slot when it accepted MAIL FROM.
                let Some(transaction) = policy.slot.as_deref_mut() else {
                    defmt::error!("mx: a transaction started without a slot");
                    continue;
                };
                transaction.clear();
                if let (ReversePath::Path(path), Some(envelope)) = (reverse_path, transaction.envelope()) {
                    transaction.failed |= !envelope.start(path.mailbox.as_str().as_bytes());
                }
                transaction.declared_size = parameters.size;
            }
            Event::RecipientAccepted(path) => {
                let Some(transaction) = policy.slot.as_deref_mut() else { continue };
                let Some(envelope) = transaction.envelope() else {
                    defmt::error!("mx: a recipient after DATA");
                    continue;
                };
                let stored = match path {
                    ForwardPath::Path(path) => envelope.push_recipient(&[path.mailbox.as_str().as_bytes()]),
                    // `<postmaster>` (RFC 5321 4.5.1): the postmaster of the first domain.
                    ForwardPath::Postmaster => crate::mail_settings::read(|settings| {
                        let domain = settings.map_or("", |settings| settings.postmaster_domain.as_str());
                        envelope.push_recipient(&[b"postmaster@", domain.as_bytes()])
                    }),
                };
                transaction.failed |= !stored;
            }
            Event::MessageBegin(_) => {
                let Some(transaction) = policy.slot.as_deref_mut() else { continue };
                let writer = begin_message(transaction, message_size).await;
                transaction.failed |= writer.is_none();
                // The spool has the envelope now: the writer takes its room.
                let recipients = transaction.recipient_count();
                transaction.stage = Stage::Message { writer, recipients };
            }
            Event::MessageData(chunk) => {
                let Some(transaction) = policy.slot.as_deref_mut() else { continue };
                if let (false, Some(writer)) = (transaction.failed, transaction.writer()) {
                    let appended = match crate::store::open().await {
                        Some(mut stores) => stores.spool.append(writer, chunk).await.is_ok(),
                        None => false,
                    };
                    transaction.failed |= !appended;
                }
            }
            Event::MessageComplete { body_size, .. } => {
                let result = match policy.slot.as_deref_mut() {
                    Some(transaction) => {
                        let user = session.authenticated_user();
                        let sender = ClientInfo { address: client, tls_active: session.tls_active(), authenticated_user: user };
                        commit_message(transaction, &sender, body_size, lan || user.is_some()).await
                    }
                    None => CommitResult::Failed,
                };
                // The transaction is over: its slot goes back to the pool.
                policy.slot = None;
                replied = Some(result == CommitResult::Committed);
                session.message_committed(result, now());
            }
            Event::TransactionAborted(reason) => {
                if let Some(mut transaction) = policy.slot.take() {
                    abort_message(&mut transaction).await;
                }
                defmt::info!("mx: transaction aborted: {}", defmt::Debug2Format(&reason));
            }
            Event::PlaintextDiscarded { octets } => {
                crate::event_warning!("mx: {} octets of pipelined plaintext discarded at STARTTLS from {}", octets, client);
            }
            Event::StartTls => {
                // The `220` first, in clear; then the handshake on the permit the policy took.
                if !send(stream, &mut session).await {
                    break;
                }
                let InboundStream::Plain(socket) = core::mem::replace(stream, InboundStream::Closed) else {
                    break;
                };
                let (Some(permit), Some(slot)) = (policy.tls_permit.take(), starttls_permit.take()) else {
                    break;
                };
                // The handshake is counted on its own; the message's count starts after it.
                drop(measurement.take());
                let permit = slot.insert(permit);
                match tls_handshake(socket, permit).await {
                    Ok(server) => {
                        let details = crate::inbound_tls::details(&server);
                        defmt::info!("mx[{}]: session {=u64}: {=str} {=str}", task_number, session_id, details.protocol, details.cipher);
                        *stream = InboundStream::Tls(socket, server);
                        session.tls_established(details, now());
                        measurement = measure_message(port, true);
                    }
                    Err(failure) => {
                        // Nothing may continue in clear after `220`: the connection ends.
                        crate::event_warning!("mx: STARTTLS handshake with {} on port {} failed: {}", client, port, failure.describe());
                        break;
                    }
                }
            }
            Event::Authenticate(credentials) => {
                // The user's record is looked up here, not inside `authenticate`: that
                // function's own state around the lookup made this await the deepest of the
                // session's future. The lookup's 1.2 KB future runs in the shared slot.
                let lookup = STORE_READS.run(|| crate::store::mail_user(credentials.username)).await.flatten();
                let (result, user_limit) = authenticate(client, &credentials, lookup).await;
                policy.user_messages_per_hour = user_limit;
                session.authentication_result(result, now());
            }
            Event::OutputFull => {
                if !send(stream, &mut session).await {
                    break;
                }
            }
            Event::Close => {
                if send(stream, &mut session).await {
                    if let Some(committed) = replied.take() {
                        finish_message(measurement.take(), committed);
                    }
                }
                break;
            }
        }
    }
    if let Some(mut transaction) = policy.slot.take() {
        abort_message(&mut transaction).await;
    }
}

/// The TLS handshake of a session on `socket` (STARTTLS, or port 465's), presenting the
/// device's identity: its configuration is built in [`STORE_READS`] when the identity changed.
async fn tls_handshake<'b>(socket: &mut TcpSocket<'static>, permit: &'b mut TlsPermit) -> Result<Box<TlsServer<'b>>, HandshakeFailure> {
    let config = match crate::inbound_tls::cached_server_config() {
        Some(config) => Some(config),
        // In a frame of its own: parsing the chain and building the configuration kept 1 KB
        // in the poll frame under it.
        None => STORE_READS.run(|| crate::stack::own_frame(crate::inbound_tls::server_config())).await.flatten(),
    };
    crate::inbound_tls::handshake(socket, permit, config).await
}

/// Checks AUTH `credentials` from `client` against `lookup`, the configured users' record for
/// its name (`None`: the store is unavailable): the salted hash in steps (other tasks run
/// between them), the same work and the same answer for an unknown user, a wrong password,
/// or a request to act as another identity. A failure is counted for
/// the address (its delay grows; the owner is alerted past the threshold). Also returns the
/// user's own hourly limit.
async fn authenticate(client: IpAddr, credentials: &AuthCredentials<'_>, lookup: Option<crate::store::MailUserLookup>) -> (AuthResult, Option<u16>) {
    let Some(lookup) = lookup else {
        return (AuthResult::TemporaryFailure, None);
    };
    let verdict = verify_password(&lookup, credentials).await;
    if verdict == Verdict::Accepted {
        crate::event_info!("submission: {} authenticated as {}", client, core::str::from_utf8(credentials.username).unwrap_or("?"));
        return (AuthResult::Accepted, lookup.messages_per_hour);
    }
    let response = AUTH_THROTTLE.lock(|throttle| throttle.borrow_mut().record_failure(client, now().monotonic_milliseconds));
    // The name is not logged: a password typed into the name field would end up in the log.
    crate::event_warning!("submission: failed AUTH from {} ({} in this hour)", client, response.client_failures);
    if response.client_alert_due || response.global_alert_due {
        crate::alerts::raise(
            AlertKind::AuthenticationFailures,
            format_args!("{} failed SMTP AUTH attempts from {} in an hour", response.client_failures, client),
        );
    }
    (AuthResult::Refused { delay_milliseconds: response.delay_milliseconds }, None)
}

/// The salted hash of the password in `credentials` checked against `lookup`'s record, in
/// steps (other tasks run between them): the same work for an unknown user or a request to act
/// as another identity, and as much padding work as the costliest answer takes. A function of
/// its own: the verifier's state then shares the session's future with the user lookup
/// instead of adding to it.
async fn verify_password(lookup: &crate::store::MailUserLookup, credentials: &AuthCredentials<'_>) -> Verdict {
    let known = match (&lookup.record, credentials.asks_for_another_identity()) {
        (Some(record), false) => Verifier::new(record, credentials.password).ok().map(|verifier| (verifier, record.iterations)),
        _ => None,
    };
    let (mut verifier, iterations) = known.unwrap_or_else(|| (Verifier::unknown_user(credentials.password, lookup.dummy_iterations), lookup.dummy_iterations));
    let verdict = loop {
        match verifier.step(ITERATIONS_PER_STEP) {
            Progress::Pending => embassy_futures::yield_now().await,
            Progress::Done(verdict) => break verdict,
        }
    };
    drop(verifier);
    // A user whose record has fewer iterations than the costliest answers only after as much
    // work as an unknown name does: the time taken tells nothing about which names exist.
    let mut padding = Derivation::new(credentials.password, b"homemx padding..", lookup.dummy_iterations.saturating_sub(iterations));
    while padding.run(ITERATIONS_PER_STEP) {
        embassy_futures::yield_now().await;
    }
    drop(padding);
    verdict
}

/// Begins the spool message of the transaction. The spool reserves the declared size
/// (`SIZE=`, at most `size_limit`), or, without one, space as the data arrives: a message
/// without `SIZE=` is never refused for the worst case of the size limit while the spool has
/// room for it. The free space is republished either way.
async fn begin_message(transaction: &mut Transaction, size_limit: u64) -> Option<MessageWriter> {
    let expected_length = transaction.declared_size.unwrap_or(0).min(size_limit).min(u64::from(u32::MAX)) as u32;
    // Borrows the transaction's addresses where they are (its slot is static): the session's
    // future holds only the envelope's 40 bytes across the spool's writes, not a list of them.
    let envelope = transaction.envelope()?.envelope()?.with_queued_at(crate::wall_clock::unix_seconds().unwrap_or(0));
    let mut stores = crate::store::open().await?;
    let writer = match stores.begin_spool_message(&envelope, expected_length).await {
        Ok(writer) => Some(writer),
        Err(error) => {
            crate::event_warning!("mx: spool refused a message: {:?}", defmt::Debug2Format(&error));
            None
        }
    };
    stores.publish_space();
    writer
}

/// Commits the message; `submitted` (a LAN client or an authenticated user) counts it against
/// the sender's hourly quotas.
async fn commit_message(transaction: &mut Transaction, sender: &ClientInfo<'_>, body_size: u64, submitted: bool) -> CommitResult {
    // The writer (1 KB) stays in the transaction's static slot and is committed by reference:
    // moved into this future (and on into the spool's) it grew every session task by 2.6 KB.
    if transaction.writer().is_none() {
        return CommitResult::Failed;
    }
    let Some(mut stores) = crate::store::open().await else {
        drop(transaction.take_writer());
        return CommitResult::Failed;
    };
    let recipient_count = transaction.recipient_count();
    let result = match (transaction.failed, transaction.writer()) {
        (_, None) => CommitResult::Failed,
        (true, Some(_)) => {
            if let Some(writer) = transaction.take_writer() {
                stores.spool.abort(writer);
            }
            reclaim_aborted(&mut stores.spool).await;
            CommitResult::Failed
        }
        (false, Some(writer)) => match stores.spool.commit_in_place(writer).await {
            Ok(commit) => {
                if submitted {
                    count_for_quota(sender);
                    crate::mail_status::update(|status| status.submitted += 1);
                } else {
                    crate::mail_status::update(|status| status.received += 1);
                }
                crate::event_info!(
                    "{}: accepted message {} from {} for {} recipients, {} bytes",
                    if submitted { "submission" } else { "mx" },
                    commit.id.0,
                    sender.address,
                    recipient_count,
                    body_size
                );
                CommitResult::Committed
            }
            Err(SpoolError::NoSpace) => CommitResult::InsufficientStorage,
            Err(_) => CommitResult::Failed,
        },
    };
    // Committed or abandoned by the spool: the writer is finished.
    drop(transaction.take_writer());
    stores.publish_space();
    drop(stores);
    crate::channels::DELIVERY_DUE.signal(());
    result
}

async fn abort_message(transaction: &mut Transaction) {
    // The writer stays in the transaction's slot until the store is open (not in this future).
    if transaction.writer().is_some() {
        if let Some(mut stores) = crate::store::open().await {
            if let Some(writer) = transaction.take_writer() {
                stores.spool.abort(writer);
            }
            reclaim_aborted(&mut stores.spool).await;
            stores.publish_space();
        }
        drop(transaction.take_writer());
    }
    transaction.failed = false;
}

/// Reclaims what an aborted message wrote at once, so the next message finds the space
/// erased (no erase on its way to `250`). (Takes no writer: a 1 KB writer held in this
/// future would grow every session task by as much.)
async fn reclaim_aborted(spool: &mut crate::store::MailSpool) {
    if let Err(error) = spool.maintain().await {
        crate::event_warning!("mx: reclaiming an aborted message's space failed: {:?}", defmt::Debug2Format(&error));
    }
}
