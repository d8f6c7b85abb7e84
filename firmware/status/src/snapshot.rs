//! [`StatusSnapshot`]: the plain facts the firmware fills in for one rendering of the status
//! page, `/status.json` and nothing else. `None` means "never happened" or "unknown"; wall-clock
//! times are Unix seconds and optional because the clock is unknown until SNTP answers.
//! Nothing secret belongs here: no passwords, keys, addresses or message contents.

use core::net::IpAddr;

use crate::alert::AlertBoard;

/// Longest host name kept (bytes); longer names are cut (see [`host_name`]).
pub const MAX_HOST_NAME_LENGTH: usize = 64;
/// Most MX records shown.
pub const MAX_MX_RECORDS: usize = 4;
/// Longest firmware version string kept (bytes).
pub const MAX_VERSION_LENGTH: usize = 32;

/// Longest ACME error text kept (bytes); longer texts are cut (see [`acme_error`]).
pub const MAX_ACME_ERROR_LENGTH: usize = 200;

/// A host name for display (from configuration or DNS: untrusted, escaped when rendered).
pub type HostName = heapless::String<MAX_HOST_NAME_LENGTH>;
/// The firmware version for display.
pub type Version = heapless::String<MAX_VERSION_LENGTH>;

/// `text` as a [`HostName`]; a longer name is cut at a character boundary and ends in `…`.
pub fn host_name(text: &str) -> HostName {
    bounded(text)
}

/// Why an ACME attempt failed, for display (the CA's problem detail is untrusted text).
pub type AcmeError = heapless::String<MAX_ACME_ERROR_LENGTH>;

/// `text` as an [`AcmeError`], cut like [`host_name`].
pub fn acme_error(text: &str) -> AcmeError {
    bounded(text)
}

/// `text` as a [`Version`], cut like [`host_name`].
pub fn version(text: &str) -> Version {
    bounded(text)
}

fn bounded<const N: usize>(text: &str) -> heapless::String<N> {
    let mut bounded = heapless::String::new();
    if bounded.push_str(text).is_ok() {
        return bounded;
    }
    const ELLIPSIS: &str = "…";
    let mut end = N.saturating_sub(ELLIPSIS.len()).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let _ = bounded.push_str(text.get(..end).unwrap_or_default());
    let _ = bounded.push_str(ELLIPSIS);
    bounded
}

/// Whether the stores are open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LockState {
    /// Never provisioned: no keys, no configuration.
    Unprovisioned,
    /// Provisioned but locked (after boot): mail is refused with 4xx until unlocked.
    #[default]
    Locked,
    /// Unlocked: mail flows.
    Unlocked,
}

impl LockState {
    /// Stable machine name.
    pub const fn name(self) -> &'static str {
        match self {
            LockState::Unprovisioned => "unprovisioned",
            LockState::Locked => "locked",
            LockState::Unlocked => "unlocked",
        }
    }
}

/// Mail counters since boot and the queue now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailFlow {
    /// Messages accepted (SMTP and POP3 fetch) since boot.
    pub received: u32,
    /// Messages delivered (to the mailbox host or the smarthost) since boot.
    pub delivered: u32,
    /// Messages in the spool now.
    pub queued: u32,
    /// Of those, messages whose delivery failed at least once and wait for a retry.
    pub deferred: u32,
    /// Messages given up on (non-delivery notice sent) since boot.
    pub bounced: u32,
    /// Age of the oldest queued message in seconds (`None`: queue empty or spool locked).
    pub oldest_queued_age_seconds: Option<u64>,
}

/// TLS protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2
    Tls12,
    /// TLS 1.3
    Tls13,
}

impl TlsVersion {
    /// Machine name and display text (`"1.2"`, `"1.3"`).
    pub const fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}

/// How a peer's identity was verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Certificate chain to a configured CA trust anchor, name checked.
    CaAnchor,
    /// The peer's public key matched the configured pin.
    PinnedKey,
}

impl Verification {
    /// Stable machine name.
    pub const fn name(self) -> &'static str {
        match self {
            Verification::CaAnchor => "ca_anchor",
            Verification::PinnedKey => "pinned_key",
        }
    }

    /// Display text.
    pub const fn text(self) -> &'static str {
        match self {
            Verification::CaAnchor => "CA anchor",
            Verification::PinnedKey => "pinned key",
        }
    }
}

/// The smarthost's TLS state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmarthostTls {
    /// Configured smarthost (`None`: none configured).
    pub host: Option<HostName>,
    /// Last verified TLS session with it.
    pub last_success_unix: Option<u64>,
    /// Last failed connection or handshake.
    pub last_failure_unix: Option<u64>,
    /// TLS version of the last successful session.
    pub tls_version: Option<TlsVersion>,
    /// How the last successful session verified the smarthost.
    pub verified_by: Option<Verification>,
}

/// Outcome of a POP3 fetch from the backup MX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchResult {
    /// Fetched (possibly zero messages).
    Ok,
    /// No TCP connection.
    ConnectFailed,
    /// TLS handshake or verification failed.
    TlsFailed,
    /// The server refused the login.
    LoginRefused,
    /// The server answered something unexpected.
    ProtocolError,
    /// The server stopped answering.
    TimedOut,
    /// The spool had no room; the messages stay on the server.
    SpoolFull,
}

impl FetchResult {
    /// Stable machine name.
    pub const fn name(self) -> &'static str {
        match self {
            FetchResult::Ok => "ok",
            FetchResult::ConnectFailed => "connect_failed",
            FetchResult::TlsFailed => "tls_failed",
            FetchResult::LoginRefused => "login_refused",
            FetchResult::ProtocolError => "protocol_error",
            FetchResult::TimedOut => "timed_out",
            FetchResult::SpoolFull => "spool_full",
        }
    }

    /// Display text.
    pub const fn text(self) -> &'static str {
        match self {
            FetchResult::Ok => "ok",
            FetchResult::ConnectFailed => "could not connect",
            FetchResult::TlsFailed => "TLS failed",
            FetchResult::LoginRefused => "login refused",
            FetchResult::ProtocolError => "protocol error",
            FetchResult::TimedOut => "timed out",
            FetchResult::SpoolFull => "spool full",
        }
    }
}

/// The last POP3 fetch from the backup MX.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pop3Fetch {
    /// Configured backup MX (`None`: fetching not configured).
    pub host: Option<HostName>,
    /// When the last fetch ended.
    pub last_attempt_unix: Option<u64>,
    /// How it ended.
    pub last_result: Option<FetchResult>,
    /// Messages it fetched.
    pub messages_fetched: Option<u32>,
    /// When a fetch last succeeded.
    pub last_success_unix: Option<u64>,
}

/// The DynDNS provider's answer to the last update (dyndns2 return codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DynDnsAnswer {
    /// `good`: updated.
    Good,
    /// `nochg`: already current.
    NoChange,
    /// `badauth`: login refused.
    BadAuth,
    /// `notfqdn`: the host name is not a fully qualified name.
    NotFqdn,
    /// `nohost`: no such host in the account.
    NoHost,
    /// `numhost`: too many hosts in one update.
    NumHost,
    /// `abuse`: the host is blocked for abuse.
    Abuse,
    /// `badagent`: the client is blocked.
    BadAgent,
    /// `dnserr`: the provider's DNS failed.
    DnsError,
    /// `911`: the provider has a problem.
    ServerError,
    /// An answer not in the dyndns2 list.
    Unrecognized,
    /// No answer (connection or TLS failed).
    NoAnswer,
}

impl DynDnsAnswer {
    /// Stable machine name (the dyndns2 code where there is one).
    pub const fn name(self) -> &'static str {
        match self {
            DynDnsAnswer::Good => "good",
            DynDnsAnswer::NoChange => "nochg",
            DynDnsAnswer::BadAuth => "badauth",
            DynDnsAnswer::NotFqdn => "notfqdn",
            DynDnsAnswer::NoHost => "nohost",
            DynDnsAnswer::NumHost => "numhost",
            DynDnsAnswer::Abuse => "abuse",
            DynDnsAnswer::BadAgent => "badagent",
            DynDnsAnswer::DnsError => "dnserr",
            DynDnsAnswer::ServerError => "911",
            DynDnsAnswer::Unrecognized => "unrecognized",
            DynDnsAnswer::NoAnswer => "no_answer",
        }
    }

    /// Whether the answer means the record is right.
    pub const fn is_success(self) -> bool {
        matches!(self, DynDnsAnswer::Good | DynDnsAnswer::NoChange)
    }
}

/// One MX record of the own domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MxRecord {
    /// Preference (lower first).
    pub preference: u16,
    /// Exchange host.
    pub host: HostName,
}

/// DynDNS and what DNS says about the own domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DynDns {
    /// The host name kept up to date (`None`: DynDNS not configured).
    pub host: Option<HostName>,
    /// Public address as the appliance last learned it.
    pub public_ip: Option<IpAddr>,
    /// The host's A (or AAAA) record as DNS last answered.
    pub a_record: Option<IpAddr>,
    /// The own domain's MX records as DNS last answered.
    pub mx: heapless::Vec<MxRecord, MAX_MX_RECORDS>,
    /// When the last update was sent.
    pub last_update_unix: Option<u64>,
    /// The provider's answer to it.
    pub last_answer: Option<DynDnsAnswer>,
}

impl DynDns {
    /// Whether the A record is the public address (`None` when either is unknown).
    pub fn a_record_matches(&self) -> Option<bool> {
        Some(self.public_ip? == self.a_record?)
    }
}

/// Free room in the spool flash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpoolSpace {
    /// Bytes free for new mail.
    pub free_bytes: u64,
    /// Size of the spool area.
    pub total_bytes: u64,
}

/// The appliance itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct System {
    /// Monotonic milliseconds since boot at the time of the snapshot (the alerts' clock).
    pub uptime_ms: u64,
    /// Firmware version.
    pub firmware_version: Version,
    /// Deepest RAM use measured (static data plus stack high-water), bytes.
    pub ram_high_water_bytes: Option<u32>,
    /// RAM size, bytes.
    pub ram_size_bytes: Option<u32>,
    /// The tamper loop's state as last read.
    pub tamper_loop: TamperLoop,
}

/// The tamper loop (a normally-closed door contact or motion detector) as the status page
/// shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TamperLoop {
    /// Closed: nothing happened.
    Closed,
    /// Open: the device is locked until it is closed.
    Open,
    /// The board has no tamper loop (or its input did not answer).
    #[default]
    NotFitted,
}

impl TamperLoop {
    /// Stable machine name, as in `/status.json`.
    pub const fn name(self) -> &'static str {
        match self {
            TamperLoop::Closed => "closed",
            TamperLoop::Open => "open",
            TamperLoop::NotFitted => "not_fitted",
        }
    }
}

/// What the last contacts with the LAN mailbox host said (monotonic milliseconds since boot:
/// the wall clock may have been unknown then; [`StatusSnapshot::unix_of`] converts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxReach {
    /// A mailbox host is configured (`false` also while locked: the settings are unreadable).
    pub configured: bool,
    /// When the last delivery or probe succeeded.
    pub last_success_ms: Option<u64>,
    /// When the current outage began: the first failure after the last success (`None`: the
    /// last contact succeeded, or there was none).
    pub failing_since_ms: Option<u64>,
    /// How the last contact failed (set together with `failing_since_ms`).
    pub failure: Option<MailboxFailure>,
}

/// How a contact with the mailbox host failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxFailure {
    /// No TCP connection, or no greeting.
    Unreachable,
    /// It answered but took nothing (a 4xx greeting or every recipient deferred).
    Refusing,
}

impl MailboxFailure {
    /// Stable machine name.
    pub const fn name(self) -> &'static str {
        match self {
            MailboxFailure::Unreachable => "unreachable",
            MailboxFailure::Refusing => "refusing",
        }
    }
}

/// The appliance's own TLS certificate (the one its listeners present): what the owner needs
/// to renew it in time. Names are the commonNames (untrusted text from a CA: escaped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceCertificate {
    /// The subject's commonName (`None`: none, e.g. a name longer than 64 bytes).
    pub subject: Option<HostName>,
    /// The issuer's commonName.
    pub issuer: Option<HostName>,
    /// Made and signed by the appliance itself (no CA chain installed).
    pub self_signed: bool,
    /// notAfter, Unix seconds.
    pub not_after_unix: u64,
}

impl DeviceCertificate {
    /// Whole days from `now` until notAfter, rounded down (negative once expired).
    pub fn days_until_expiry(&self, now: u64) -> i64 {
        let seconds = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        seconds(self.not_after_unix).saturating_sub(seconds(now)).div_euclid(86_400)
    }
}

/// The certificate the appliance obtains and renews by ACME (`[tls.acme]`): how the last
/// attempt went and when the next one is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcmeRenewal {
    /// When the last attempt ended (`None`: none since boot).
    pub last_attempt_unix: Option<u64>,
    /// Whether it installed a certificate.
    pub last_succeeded: Option<bool>,
    /// Why it failed (the client's reason, the CA's problem type and detail included); `None`
    /// after a success.
    pub last_error: Option<AcmeError>,
    /// When the next attempt is due (`None`: not scheduled yet, e.g. the clock is not set).
    pub next_attempt_unix: Option<u64>,
    /// notAfter of the certificate ACME installed (or found in use).
    pub certificate_expiry_unix: Option<u64>,
    /// Failed attempts since the last success.
    pub failures: u32,
}

/// Everything the status page and `/status.json` show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusSnapshot {
    /// Wall clock at the time of the snapshot (`None` before SNTP answered).
    pub now_unix: Option<u64>,
    /// Locked or not.
    pub lock: LockState,
    /// Mail counters and queue.
    pub mail: MailFlow,
    /// Smarthost TLS.
    pub smarthost: SmarthostTls,
    /// Last fetch from the backup MX.
    pub pop3: Pop3Fetch,
    /// DynDNS and DNS.
    pub dyndns: DynDns,
    /// The last contacts with the LAN mailbox host (deliveries and probes).
    pub mailbox: MailboxReach,
    /// Spool space (`None` while locked: the spool is not mounted).
    pub spool: Option<SpoolSpace>,
    /// Active alerts.
    pub alerts: AlertBoard,
    /// The appliance.
    pub system: System,
    /// The appliance's own TLS certificate (`None`: locked, unconfigured, or not made yet).
    pub certificate: Option<DeviceCertificate>,
    /// Its renewal by ACME (`None`: `[tls.acme]` not configured, or locked).
    pub acme: Option<AcmeRenewal>,
}

impl StatusSnapshot {
    /// Seconds since boot.
    pub fn uptime_seconds(&self) -> u64 {
        self.system.uptime_ms / 1000
    }

    /// Seconds between monotonic time `at_ms` and the snapshot (0 if in the future).
    pub fn age_seconds(&self, at_ms: u64) -> u64 {
        self.system.uptime_ms.saturating_sub(at_ms) / 1000
    }

    /// Unix time of monotonic time `at_ms`, when the wall clock is known.
    pub fn unix_of(&self, at_ms: u64) -> Option<u64> {
        self.now_unix?.checked_sub(self.age_seconds(at_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        assert_eq!(host_name("mx.example.org").as_str(), "mx.example.org");
        let long = "é".repeat(40); // 80 bytes
        let cut = host_name(&long);
        assert!(cut.len() <= MAX_HOST_NAME_LENGTH);
        assert!(cut.ends_with('…'));
        assert!(long.starts_with(cut.trim_end_matches('…')));
        assert_eq!(host_name(&"a".repeat(64)).len(), 64);
        assert!(host_name(&"a".repeat(65)).ends_with('…'));
    }
}
