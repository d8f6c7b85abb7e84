//! `UpdateGuard`: decides when the DynDNS record is updated, without I/O. The firmware feeds
//! observations (public address from check-IP, the host name's A record from DNS, the update
//! answers, the owner's reset) with the current Unix time in seconds, asks [`UpdateGuard::decide`]
//! what to do, and persists [`UpdateGuard::encode`] whenever [`UpdateGuard::take_dirty`] says so.
//!
//! Rules (every one is tested in this module):
//! 1. **Why update.** Only when (a) the public address differs from the last address
//!    successfully registered ("address changed"), or (b) DNS shows an address different from
//!    ours, or no A record at all, while we believe our address is registered ("corrective"),
//!    or (c) the forced-refresh interval passed since the last success (default 28 days: many
//!    providers expire records not updated for 30 days) ("refresh"). Nothing else triggers an
//!    update: a `nochg` storm is what providers block clients for.
//! 2. **Minimum spacing.** Two update attempts are at least `min_spacing_s` apart (default
//!    10 min), whatever the reason, success or not.
//! 3. **Backoff.** A Backoff answer (`911`, `dnserr`, HTTP 5xx, unknown answer, transport
//!    failure) delays the next attempt by [`backoff_delay_s`]: 30 min doubling to 24 h. A
//!    success clears it.
//! 4. **Fatal answers stop everything.** `badauth` (and HTTP 401/403), `!donator`, `notfqdn`,
//!    `nohost`, `numhost`, `abuse`, `badagent`: [`Decision::Stopped`] until [`UpdateGuard::owner_reset`].
//! 5. **DNS settling.** DNS observations within `dns_settle_s` (default 10 min) after a
//!    successful update, or while an update is in flight, are ignored: resolvers may still
//!    show the old record. The firmware passes `None` only for an authoritative "no A record"
//!    answer; a failed lookup is simply not reported. Ask the domain's authoritative servers
//!    (or set `dns_settle_s` above the record's TTL): a caching resolver that still holds the
//!    old answer after the settling time looks like a contradiction (rule 6).
//! 6. **No correction loop.** After a corrective update succeeds, the next settled DNS
//!    observation must show our address. If it still contradicts, that counts as a failed
//!    correction; at `max_failed_corrections` (default 2) in a row the guard stops with
//!    [`StopReason::DnsKeepsContradicting`] and alerts instead of retrying forever (someone
//!    else keeps changing the record, or the provider ignores us). A settled observation
//!    showing our address resets the count.
//! 7. **Answer address.** A `good`/`nochg` naming a different address than the one sent is
//!    treated as a Backoff failure (the provider registered something we did not ask for).
//! 8. **In flight.** After `decide` returns [`Decision::Update`] the guard waits for
//!    [`UpdateGuard::update_finished`]; if it never comes, the attempt counts as a transport
//!    failure after `min_spacing_s`.
//! 9. **Non-public addresses** (see [`is_public`]: private, CGNAT, ...) are never registered;
//!    they clear the known public address and are counted for the status page.
//! 10. **Reboots.** The persisted state holds the registered address, the times of the last
//!     success and attempt, the backoff, the stop reason, the correction count and the
//!     counters, so a reboot with an unchanged address causes no update. [`UpdateGuard::decode`]
//!     refuses garbage (magic, version, length, CRC-32, field ranges); the firmware then starts
//!     from [`UpdateGuard::new`], which costs at most one update.
//! 11. **Clock.** Times are Unix seconds from SNTP. If the clock goes backwards past a stored
//!     time, that time is re-based to now, so a wrong clock delays an update by at most one
//!     spacing interval (or one maximal backoff), never blocks it forever.
//! 12. **Owner reset** clears the stop, the backoff and the correction count; the minimum
//!     spacing still applies.
//! 13. **Check-IP quorum.** [`UpdateGuard::observe_check_ip`] takes one check's answers keyed
//!     by source host and combines them with [`agree`]: a host listed twice counts once, two
//!     distinct hosts must agree. An agreed public address becomes the public address and the
//!     persisted *last agreed* address. A check without agreement (disagreement, junk, silence,
//!     fewer than two distinct sources) leaves the public address unknown (no update on
//!     unverified information) and counts; at `unreliable_checks_alert` (default 3) such
//!     checks in a row [`UpdateGuard::check_ip_unreliable`] says so (an alert for the owner)
//!     until the sources agree again. Breaking one source silences nothing.
//! 14. **DNS is judged at every check.** [`UpdateGuard::verify`] judges the MX set always and
//!     the A records against [`UpdateGuard::reference_address`] (the last agreed address, else
//!     the registered one), so a disagreement does not switch the diversion alarms off;
//!     [`UpdateGuard::alarms`] says which to raise or clear (an A record that differs is an
//!     alarm only once something was registered: before that we are about to update it).
//! 15. **Server-side failures alert.** Answers the update server gave that are neither success
//!     nor fatal (`911`, `dnserr`, HTTP 5xx and other non-2xx, an unknown answer, an address we
//!     did not send) count in a row; a transport failure neither counts nor resets (the line
//!     or TLS is at fault, alerted elsewhere), a success or the owner's reset clears the count.
//!     At `server_failures_alert` (default 2: with the backoff, about 30 minutes of a failing
//!     provider) [`UpdateGuard::update_server_failing`] says so.

use crate::checkip::{agree, is_public, Agreement, Ipv4};
use crate::dyndns2::{backoff_delay_s, AnswerClass, UpdateAnswer, BACKOFF_MAX_S};
use crate::verify::{verify_dns, ARecord, MxState, Verdict};

/// The guard's tunable intervals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardConfig {
    /// Least time between two update attempts (seconds).
    pub min_spacing_s: u64,
    /// Time after the last success after which the record is refreshed anyway (seconds).
    pub forced_refresh_s: u64,
    /// Time after a successful update during which DNS observations are not judged (seconds).
    pub dns_settle_s: u64,
    /// Failed corrections in a row after which updates stop.
    pub max_failed_corrections: u8,
    /// Checks in a row without check-IP agreement after which the owner is alerted.
    pub unreliable_checks_alert: u8,
    /// Server-side update failures in a row after which the owner is alerted.
    pub server_failures_alert: u8,
}

impl GuardConfig {
    /// 10 min spacing, 28 days refresh, 10 min settling, stop after 2 failed corrections,
    /// alert after 3 checks without check-IP agreement or 2 server-side failures in a row.
    pub const DEFAULT: GuardConfig = GuardConfig {
        min_spacing_s: 10 * 60,
        forced_refresh_s: 28 * 24 * 60 * 60,
        dns_settle_s: 10 * 60,
        max_failed_corrections: 2,
        unreliable_checks_alert: 3,
        server_failures_alert: 2,
    };
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig::DEFAULT
    }
}

/// Why an update was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateReason {
    /// The public address differs from the registered one.
    AddressChanged,
    /// DNS contradicts the registered address.
    Corrective,
    /// The forced-refresh interval passed.
    Refresh,
}

/// Why updates are stopped until the owner acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The provider gave a Fatal answer.
    Fatal(UpdateAnswer),
    /// DNS kept contradicting after corrective updates.
    DnsKeepsContradicting,
}

/// What the firmware should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do.
    Nothing,
    /// Send a dyndns2 update for this address now, then call [`UpdateGuard::update_finished`].
    Update(Ipv4),
    /// Updates are stopped; alert the owner.
    Stopped(StopReason),
}

/// Counters for the status page (persisted with the state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardStats {
    /// Calls to [`UpdateGuard::decide`] (not persisted on their own: saved with other changes).
    pub decisions: u32,
    /// Updates started.
    pub updates_started: u32,
    /// Updates that succeeded.
    pub updates_succeeded: u32,
    /// Updates that ended in a Backoff answer.
    pub updates_failed: u32,
    /// Fatal answers received.
    pub fatal_answers: u32,
    /// Corrective updates started.
    pub corrective_updates: u32,
    /// Refresh updates started.
    pub refresh_updates: u32,
    /// Settled DNS observations that contradicted the registered address.
    pub dns_contradictions: u32,
    /// Non-public addresses observed (CGNAT, private).
    pub non_public_addresses: u32,
}

/// The alarms one check gives (see rules 14 and 15): `Some(true)` raise, `Some(false)` clear,
/// `None` not judged this time (keep as is).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckAlarms {
    /// The host name's A record names an address we did not agree on or register.
    pub address_diverted: Option<bool>,
    /// The domain's MX set sends mail (or part of it) elsewhere.
    pub mx_diverted: Option<bool>,
    /// The A or MX record is missing (mail cannot arrive): a warning, no diversion.
    pub unreachable: bool,
    /// The check-IP sources have not agreed for several checks in a row.
    pub check_ip_unreliable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    address: Ipv4,
    reason: UpdateReason,
    started_s: u64,
}

/// The update decision state machine (see the module documentation for its rules).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateGuard {
    config: GuardConfig,
    registered: Option<Ipv4>,
    last_success_s: u64,
    last_attempt_s: Option<u64>,
    consecutive_failures: u32,
    backoff_until_s: u64,
    stop: Option<StopReason>,
    failed_corrections: u8,
    awaiting_confirmation: bool,
    stats: GuardStats,
    public: Option<Ipv4>,
    last_non_public: Option<Ipv4>,
    dns: Option<Option<Ipv4>>,
    pending: Option<Pending>,
    last_reason: Option<UpdateReason>,
    last_agreed: Option<Ipv4>,
    unreliable_checks: u8,
    server_failures: u8,
    dirty: bool,
}

/// Length of the persisted state ([`UpdateGuard::encode`]).
pub const STATE_LENGTH: usize = 88;
/// Length of the state version 1 wrote (read, never written).
const STATE_LENGTH_VERSION_1: usize = 82;
const MAGIC: &[u8; 4] = b"HMDG";
const VERSION: u8 = 2;

/// Why persisted state was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not [`STATE_LENGTH`] bytes.
    Length,
    /// Not a guard state (magic).
    Magic,
    /// A version this firmware does not read.
    Version,
    /// The CRC-32 does not match (torn or corrupted write).
    Checksum,
    /// A field out of its range.
    Field,
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn fatal_code(answer: UpdateAnswer) -> u8 {
    match answer {
        UpdateAnswer::BadAuth => 10,
        UpdateAnswer::NotDonator => 11,
        UpdateAnswer::NotFqdn => 12,
        UpdateAnswer::NoHost => 13,
        UpdateAnswer::NumHost => 14,
        UpdateAnswer::Abuse => 15,
        UpdateAnswer::BadAgent => 16,
        _ => 0,
    }
}

fn fatal_from_code(code: u8) -> Option<UpdateAnswer> {
    [
        UpdateAnswer::BadAuth,
        UpdateAnswer::NotDonator,
        UpdateAnswer::NotFqdn,
        UpdateAnswer::NoHost,
        UpdateAnswer::NumHost,
        UpdateAnswer::Abuse,
        UpdateAnswer::BadAgent,
    ]
    .into_iter()
    .find(|&answer| fatal_code(answer) == code)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self.bytes.split_at_checked(N).ok_or(DecodeError::Length)?;
        self.bytes = rest;
        head.try_into().map_err(|_| DecodeError::Length)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
}

impl UpdateGuard {
    /// A guard with nothing registered yet (first boot, or unreadable state).
    pub fn new(config: GuardConfig) -> Self {
        UpdateGuard {
            config,
            registered: None,
            last_success_s: 0,
            last_attempt_s: None,
            consecutive_failures: 0,
            backoff_until_s: 0,
            stop: None,
            failed_corrections: 0,
            awaiting_confirmation: false,
            stats: GuardStats::default(),
            public: None,
            last_non_public: None,
            dns: None,
            pending: None,
            last_reason: None,
            last_agreed: None,
            unreliable_checks: 0,
            server_failures: 0,
            dirty: false,
        }
    }

    /// One check's check-IP answers, one `(host name, answer)` per configured source, in the
    /// configured order (`None`: no or unusable answer). Combines them with [`agree`] (rule 13)
    /// and returns the verdict; an agreed address is observed as the public address.
    pub fn observe_check_ip(&mut self, answers: &[(&str, Option<Ipv4>)], now_s: u64) -> Agreement {
        let agreement = agree(answers);
        if let Agreement::Agreed(ip) = agreement {
            self.observe_public_address(ip, now_s);
            if is_public(ip) && self.last_agreed != Some(ip) {
                self.last_agreed = Some(ip);
                self.dirty = true;
            }
            if self.unreliable_checks != 0 {
                self.unreliable_checks = 0;
                self.dirty = true;
            }
        } else {
            self.public = None;
            if self.unreliable_checks != u8::MAX {
                self.unreliable_checks += 1;
                self.dirty = true;
            }
        }
        agreement
    }

    /// The address DNS is judged against: the last address the check-IP sources agreed on,
    /// else the last one registered (rule 14).
    pub fn reference_address(&self) -> Option<Ipv4> {
        self.last_agreed.or(self.registered)
    }

    /// Judges the DNS view of one check (rule 14): `a_records` of the DynDNS host name against
    /// [`reference_address`](Self::reference_address), `domain_mx` always.
    pub fn verify<'a>(&self, host_name: &str, a_records: &[Ipv4], domain_mx: &[(u16, &'a str)]) -> Verdict<'a> {
        verify_dns(self.reference_address(), host_name, a_records, domain_mx, self.registered)
    }

    /// The alarms of a check whose DNS view gave `verdict`; `a_answered` / `mx_answered` say
    /// whether the A and MX lookups got an answer (a failed lookup judges nothing: an empty
    /// list in the verdict then means "not known", not "no record").
    pub fn alarms(&self, verdict: &Verdict<'_>, a_answered: bool, mx_answered: bool) -> CheckAlarms {
        let address_diverted = match verdict.a {
            _ if !a_answered => None,
            ARecord::Differs if self.registered.is_some() => Some(true),
            ARecord::Differs | ARecord::NotJudged | ARecord::Missing => None,
            ARecord::Matches | ARecord::Stale => Some(false),
        };
        let mx_diverted = match verdict.mx {
            _ if !mx_answered => None,
            MxState::OursPreferred => Some(false),
            MxState::SharedPreference | MxState::ForeignPreferred | MxState::NotListed => Some(true),
            MxState::Missing => None,
        };
        CheckAlarms {
            address_diverted,
            mx_diverted,
            unreachable: (a_answered && verdict.a == ARecord::Missing) || (mx_answered && verdict.mx == MxState::Missing),
            check_ip_unreliable: self.check_ip_unreliable(),
        }
    }

    /// Whether the check-IP sources failed to agree `unreliable_checks_alert` checks in a row.
    pub fn check_ip_unreliable(&self) -> bool {
        self.unreliable_checks >= self.config.unreliable_checks_alert.max(1)
    }

    /// Checks in a row without check-IP agreement.
    pub fn unreliable_checks(&self) -> u8 {
        self.unreliable_checks
    }

    /// Whether the update server gave `server_failures_alert` server-side failures in a row.
    pub fn update_server_failing(&self) -> bool {
        self.server_failures >= self.config.server_failures_alert.max(1)
    }

    /// Server-side update failures in a row.
    pub fn server_failures(&self) -> u8 {
        self.server_failures
    }

    /// The last public address the check-IP sources agreed on.
    pub fn last_agreed(&self) -> Option<Ipv4> {
        self.last_agreed
    }

    /// A check-IP result (after [`agree`](crate::checkip::agree)). Non-public addresses are not
    /// registered: they clear the known public address and are counted.
    pub fn observe_public_address(&mut self, ip: Ipv4, _now_s: u64) {
        if is_public(ip) {
            self.public = Some(ip);
            self.last_non_public = None;
        } else {
            self.public = None;
            if self.last_non_public != Some(ip) {
                self.stats.non_public_addresses = self.stats.non_public_addresses.saturating_add(1);
            }
            self.last_non_public = Some(ip);
        }
    }

    /// The host name's A record as DNS answers it now (`None`: an authoritative answer with
    /// no A record). Ignored while an update is in flight or settling.
    pub fn observe_dns_address(&mut self, dns: Option<Ipv4>, now_s: u64) {
        let Some(registered) = self.registered else { return };
        if self.pending.is_some() || now_s < self.last_success_s.saturating_add(self.config.dns_settle_s) {
            return;
        }
        let agrees = dns == Some(registered);
        if agrees {
            if self.awaiting_confirmation || self.failed_corrections != 0 {
                self.dirty = true;
            }
            self.awaiting_confirmation = false;
            self.failed_corrections = 0;
            self.dns = Some(dns);
            return;
        }
        self.stats.dns_contradictions = self.stats.dns_contradictions.saturating_add(1);
        self.dns = Some(dns);
        if self.awaiting_confirmation {
            self.awaiting_confirmation = false;
            self.failed_corrections = self.failed_corrections.saturating_add(1);
            self.dirty = true;
            if self.failed_corrections >= self.config.max_failed_corrections {
                self.stop = Some(StopReason::DnsKeepsContradicting);
            }
        }
    }

    /// Decides what to do at `now_s`. Returning [`Decision::Update`] starts an attempt: the
    /// firmware must send it and report [`update_finished`](Self::update_finished).
    pub fn decide(&mut self, now_s: u64) -> Decision {
        self.stats.decisions = self.stats.decisions.wrapping_add(1);
        if let Some(pending) = self.pending {
            if now_s.saturating_sub(pending.started_s) < self.config.min_spacing_s && now_s >= pending.started_s {
                return Decision::Nothing;
            }
            self.update_finished(UpdateAnswer::TransportError, now_s);
        }
        if let Some(reason) = self.stop {
            return Decision::Stopped(reason);
        }
        self.rebase_clock(now_s);
        let Some(public) = self.public else { return Decision::Nothing };
        if now_s < self.backoff_until_s {
            return Decision::Nothing;
        }
        if self.last_attempt_s.is_some_and(|last| now_s - last < self.config.min_spacing_s) {
            return Decision::Nothing;
        }
        let reason = if self.registered != Some(public) {
            UpdateReason::AddressChanged
        } else if self.dns.is_some_and(|dns| dns != Some(public)) {
            UpdateReason::Corrective
        } else if now_s - self.last_success_s >= self.config.forced_refresh_s {
            UpdateReason::Refresh
        } else {
            return Decision::Nothing;
        };
        self.pending = Some(Pending { address: public, reason, started_s: now_s });
        self.last_attempt_s = Some(now_s);
        self.last_reason = Some(reason);
        self.dns = None;
        self.stats.updates_started = self.stats.updates_started.saturating_add(1);
        match reason {
            UpdateReason::Corrective => self.stats.corrective_updates = self.stats.corrective_updates.saturating_add(1),
            UpdateReason::Refresh => self.stats.refresh_updates = self.stats.refresh_updates.saturating_add(1),
            UpdateReason::AddressChanged => {}
        }
        self.dirty = true;
        Decision::Update(public)
    }

    fn rebase_clock(&mut self, now_s: u64) {
        if self.last_attempt_s.is_some_and(|last| last > now_s) {
            self.last_attempt_s = Some(now_s);
            self.dirty = true;
        }
        if self.last_success_s > now_s {
            self.last_success_s = now_s;
            self.dirty = true;
        }
        if self.backoff_until_s > now_s.saturating_add(BACKOFF_MAX_S) {
            self.backoff_until_s = now_s.saturating_add(BACKOFF_MAX_S);
            self.dirty = true;
        }
    }

    /// The answer to the update [`decide`](Self::decide) started (use
    /// [`UpdateAnswer::TransportError`] when the request failed). Ignored if none is in flight.
    pub fn update_finished(&mut self, answer: UpdateAnswer, now_s: u64) {
        let Some(pending) = self.pending.take() else { return };
        self.dirty = true;
        let class = match answer {
            UpdateAnswer::Good(Some(address)) | UpdateAnswer::NoChange(Some(address)) if address != pending.address => {
                AnswerClass::Backoff
            }
            _ => answer.class(),
        };
        match class {
            AnswerClass::Success => {
                self.registered = Some(pending.address);
                self.last_success_s = now_s;
                self.consecutive_failures = 0;
                self.server_failures = 0;
                self.backoff_until_s = 0;
                self.awaiting_confirmation = pending.reason == UpdateReason::Corrective;
                self.stats.updates_succeeded = self.stats.updates_succeeded.saturating_add(1);
            }
            AnswerClass::Fatal => {
                self.stop = Some(StopReason::Fatal(answer));
                self.stats.fatal_answers = self.stats.fatal_answers.saturating_add(1);
            }
            AnswerClass::Backoff => {
                if answer != UpdateAnswer::TransportError {
                    self.server_failures = self.server_failures.saturating_add(1);
                }
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.backoff_until_s = now_s.saturating_add(backoff_delay_s(self.consecutive_failures));
                self.stats.updates_failed = self.stats.updates_failed.saturating_add(1);
            }
        }
    }

    /// The owner acted (fixed the account, checked DNS): clear the stop, backoff and
    /// correction count. The minimum spacing still applies.
    pub fn owner_reset(&mut self) {
        self.stop = None;
        self.consecutive_failures = 0;
        self.server_failures = 0;
        self.backoff_until_s = 0;
        self.failed_corrections = 0;
        self.awaiting_confirmation = false;
        self.dns = None;
        self.dirty = true;
    }

    /// Whether the persisted state changed since the last call (then save [`encode`](Self::encode)).
    pub fn take_dirty(&mut self) -> bool {
        core::mem::replace(&mut self.dirty, false)
    }

    /// The last address successfully registered.
    pub fn registered(&self) -> Option<Ipv4> {
        self.registered
    }

    /// The current public address, if a public one is known.
    pub fn public_address(&self) -> Option<Ipv4> {
        self.public
    }

    /// The last non-public address observed while no public one is known (CGNAT alert).
    pub fn non_public_address(&self) -> Option<Ipv4> {
        self.last_non_public
    }

    /// Why updates are stopped, if they are.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// The reason of the last update started.
    pub fn last_reason(&self) -> Option<UpdateReason> {
        self.last_reason
    }

    /// Unix time before which no update is tried because of backoff (0: none).
    pub fn backoff_until_s(&self) -> u64 {
        self.backoff_until_s
    }

    /// Unix time of the last successful update (0: never).
    pub fn last_success_s(&self) -> u64 {
        self.last_success_s
    }

    /// Failed corrections in a row.
    pub fn failed_corrections(&self) -> u8 {
        self.failed_corrections
    }

    /// The counters.
    pub fn stats(&self) -> GuardStats {
        self.stats
    }

    /// The persistable state: magic, version, fields (little-endian), CRC-32.
    pub fn encode(&self) -> [u8; STATE_LENGTH] {
        let mut out = [0u8; STATE_LENGTH];
        let mut length = 0;
        let mut put = |bytes: &[u8]| {
            if let Some(slot) = out.get_mut(length..length + bytes.len()) {
                slot.copy_from_slice(bytes);
            }
            length += bytes.len();
        };
        put(MAGIC);
        put(&[VERSION]);
        let flags = u8::from(self.registered.is_some())
            | u8::from(self.awaiting_confirmation) << 1
            | u8::from(self.last_attempt_s.is_some()) << 2
            | u8::from(self.last_agreed.is_some()) << 3;
        put(&[flags]);
        put(&self.registered.unwrap_or([0; 4]));
        put(&self.last_success_s.to_le_bytes());
        put(&self.last_attempt_s.unwrap_or(0).to_le_bytes());
        put(&self.consecutive_failures.to_le_bytes());
        put(&self.backoff_until_s.to_le_bytes());
        let stop = match self.stop {
            None => 0,
            Some(StopReason::DnsKeepsContradicting) => 1,
            Some(StopReason::Fatal(answer)) => fatal_code(answer),
        };
        put(&[stop, self.failed_corrections]);
        let s = self.stats;
        for counter in [
            s.decisions,
            s.updates_started,
            s.updates_succeeded,
            s.updates_failed,
            s.fatal_answers,
            s.corrective_updates,
            s.refresh_updates,
            s.dns_contradictions,
            s.non_public_addresses,
        ] {
            put(&counter.to_le_bytes());
        }
        put(&self.last_agreed.unwrap_or([0; 4]));
        put(&[self.unreliable_checks, self.server_failures]);
        let crc_at = STATE_LENGTH - 4;
        let crc = crc32(out.get(..crc_at).unwrap_or(&[]));
        if let Some(slot) = out.get_mut(crc_at..) {
            slot.copy_from_slice(&crc.to_le_bytes());
        }
        out
    }

    /// Restores a guard from [`encode`](Self::encode)d bytes (or the 82 bytes of version 1,
    /// which had no last agreed address and no alert counts); refuses anything else.
    pub fn decode(config: GuardConfig, bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < 5 {
            return Err(DecodeError::Length);
        }
        if bytes.get(..4) != Some(MAGIC) {
            return Err(DecodeError::Magic);
        }
        let version = bytes.get(4).copied().unwrap_or(0);
        let expected_length = match version {
            VERSION => STATE_LENGTH,
            1 => STATE_LENGTH_VERSION_1,
            _ => return Err(DecodeError::Version),
        };
        if bytes.len() != expected_length {
            return Err(DecodeError::Length);
        }
        let (body, crc) = bytes.split_at(expected_length - 4);
        if crc32(body).to_le_bytes() != crc {
            return Err(DecodeError::Checksum);
        }
        let mut reader = Reader { bytes: body.get(5..).unwrap_or(&[]) };
        let flags = reader.u8()?;
        let known_flags = if version == 1 { 0b111 } else { 0b1111 };
        if flags & !known_flags != 0 {
            return Err(DecodeError::Field);
        }
        let registered = reader.take::<4>()?;
        let last_success_s = reader.u64()?;
        let last_attempt_s = reader.u64()?;
        let consecutive_failures = reader.u32()?;
        let backoff_until_s = reader.u64()?;
        let stop = match reader.u8()? {
            0 => None,
            1 => Some(StopReason::DnsKeepsContradicting),
            code => Some(StopReason::Fatal(fatal_from_code(code).ok_or(DecodeError::Field)?)),
        };
        let failed_corrections = reader.u8()?;
        let mut counters = [0u32; 9];
        for counter in counters.iter_mut() {
            *counter = reader.u32()?;
        }
        let [decisions, updates_started, updates_succeeded, updates_failed, fatal_answers, corrective_updates, refresh_updates, dns_contradictions, non_public_addresses] =
            counters;
        let (last_agreed, unreliable_checks, server_failures) = if version == 1 {
            ([0; 4], 0, 0)
        } else {
            (reader.take::<4>()?, reader.u8()?, reader.u8()?)
        };
        let mut guard = UpdateGuard::new(config);
        guard.last_agreed = (flags & 8 != 0).then_some(last_agreed);
        guard.unreliable_checks = unreliable_checks;
        guard.server_failures = server_failures;
        guard.registered = (flags & 1 != 0).then_some(registered);
        guard.awaiting_confirmation = flags & 2 != 0;
        guard.last_attempt_s = (flags & 4 != 0).then_some(last_attempt_s);
        guard.last_success_s = last_success_s;
        guard.consecutive_failures = consecutive_failures;
        guard.backoff_until_s = backoff_until_s;
        guard.stop = stop;
        guard.failed_corrections = failed_corrections;
        guard.stats = GuardStats {
            decisions,
            updates_started,
            updates_succeeded,
            updates_failed,
            fatal_answers,
            corrective_updates,
            refresh_updates,
            dns_contradictions,
            non_public_addresses,
        };
        Ok(guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: Ipv4 = [203, 0, 113, 5];
    const B: Ipv4 = [203, 0, 113, 77];
    const X: Ipv4 = [198, 51, 100, 66];
    const T0: u64 = 1_800_000_000;
    const MIN: u64 = 60;
    const HOUR: u64 = 3600;
    const DAY: u64 = 86_400;

    fn registered_guard(address: Ipv4, last_success_s: u64) -> UpdateGuard {
        let mut guard = UpdateGuard::new(GuardConfig::DEFAULT);
        guard.observe_public_address(address, last_success_s);
        assert_eq!(guard.decide(last_success_s), Decision::Update(address));
        guard.update_finished(UpdateAnswer::Good(Some(address)), last_success_s);
        guard
    }

    #[test]
    fn first_boot_registers_once() {
        let mut guard = UpdateGuard::new(GuardConfig::DEFAULT);
        assert_eq!(guard.decide(T0), Decision::Nothing, "no address known yet");
        guard.observe_public_address(A, T0);
        assert_eq!(guard.decide(T0), Decision::Update(A));
        assert_eq!(guard.last_reason(), Some(UpdateReason::AddressChanged));
        assert_eq!(guard.decide(T0 + 1), Decision::Nothing, "in flight");
        guard.update_finished(UpdateAnswer::Good(Some(A)), T0 + 2);
        assert_eq!(guard.registered(), Some(A));
        for minute in 1..(60 * 24) {
            guard.observe_public_address(A, T0 + minute * MIN);
            guard.observe_dns_address(Some(A), T0 + minute * MIN);
            assert_eq!(guard.decide(T0 + minute * MIN), Decision::Nothing);
        }
        assert_eq!(guard.stats().updates_started, 1);
    }

    #[test]
    fn address_change_respects_minimum_spacing() {
        let mut guard = registered_guard(A, T0);
        guard.observe_public_address(B, T0 + 5 * MIN);
        assert_eq!(guard.decide(T0 + 5 * MIN), Decision::Nothing, "10 min spacing");
        assert_eq!(guard.decide(T0 + 10 * MIN), Decision::Update(B));
        guard.update_finished(UpdateAnswer::Good(Some(B)), T0 + 10 * MIN);
        // Flapping addresses: never more than one attempt per 10 minutes.
        let mut attempts = Vec::new();
        for minute in 11..300 {
            let now = T0 + minute * MIN;
            guard.observe_public_address(if minute % 2 == 0 { A } else { B }, now);
            if let Decision::Update(address) = guard.decide(now) {
                attempts.push(now);
                guard.update_finished(UpdateAnswer::Good(Some(address)), now);
            }
        }
        assert!(attempts.windows(2).all(|w| w[1] - w[0] >= 10 * MIN), "{attempts:?}");
    }

    #[test]
    fn forced_refresh_after_28_days() {
        let mut guard = registered_guard(A, T0);
        let mut refreshes = 0;
        for hour in 1..(60 * 24) {
            let now = T0 + hour * HOUR;
            guard.observe_public_address(A, now);
            guard.observe_dns_address(Some(A), now);
            if let Decision::Update(address) = guard.decide(now) {
                assert_eq!(guard.last_reason(), Some(UpdateReason::Refresh));
                assert_eq!((now - T0) % (28 * DAY), 0);
                refreshes += 1;
                guard.update_finished(UpdateAnswer::NoChange(Some(address)), now);
            }
        }
        assert_eq!(refreshes, 2, "days 28 and 56 of 60");
        let config = GuardConfig { forced_refresh_s: 7 * DAY, ..GuardConfig::DEFAULT };
        let mut guard = UpdateGuard::decode(config, &registered_guard(A, T0).encode()).unwrap();
        guard.observe_public_address(A, T0);
        assert_eq!(guard.decide(T0 + 7 * DAY - 1), Decision::Nothing);
        assert_eq!(guard.decide(T0 + 7 * DAY), Decision::Update(A));
    }

    #[test]
    fn fatal_answers_stop_until_the_owner_resets() {
        for answer in [
            UpdateAnswer::BadAuth,
            UpdateAnswer::NotDonator,
            UpdateAnswer::NotFqdn,
            UpdateAnswer::NoHost,
            UpdateAnswer::NumHost,
            UpdateAnswer::Abuse,
            UpdateAnswer::BadAgent,
        ] {
            let mut guard = registered_guard(A, T0);
            guard.observe_public_address(B, T0 + HOUR);
            assert_eq!(guard.decide(T0 + HOUR), Decision::Update(B));
            guard.update_finished(answer, T0 + HOUR);
            for day in 1..40 {
                assert_eq!(guard.decide(T0 + day * DAY), Decision::Stopped(StopReason::Fatal(answer)));
            }
            // The stop survives a reboot.
            let mut guard = UpdateGuard::decode(GuardConfig::DEFAULT, &guard.encode()).unwrap();
            guard.observe_public_address(B, T0 + 41 * DAY);
            assert_eq!(guard.decide(T0 + 41 * DAY), Decision::Stopped(StopReason::Fatal(answer)));
            guard.owner_reset();
            assert_eq!(guard.decide(T0 + 41 * DAY), Decision::Update(B));
            assert_eq!(guard.stats().fatal_answers, 1);
        }
    }

    #[test]
    fn backoff_grows_and_success_clears_it() {
        let mut guard = registered_guard(A, T0);
        guard.observe_public_address(B, T0);
        let mut now = T0 + HOUR;
        let mut attempts = Vec::new();
        while now < T0 + 5 * DAY {
            if let Decision::Update(_) = guard.decide(now) {
                attempts.push(now);
                guard.update_finished(UpdateAnswer::ServerError, now);
            }
            now += 5 * MIN;
        }
        let gaps: Vec<u64> = attempts.windows(2).map(|w| (w[1] - w[0]) / MIN).collect();
        assert_eq!(&gaps[..7], &[30, 60, 120, 240, 480, 960, 1440]);
        assert!(gaps[7..].iter().all(|&gap| gap == 1440));
        // A good answer clears the backoff.
        let now = *attempts.last().unwrap() + DAY;
        assert_eq!(guard.decide(now), Decision::Update(B));
        guard.update_finished(UpdateAnswer::Good(Some(B)), now);
        assert_eq!(guard.backoff_until_s(), 0);
        guard.observe_public_address(A, now);
        assert_eq!(guard.decide(now + 10 * MIN), Decision::Update(A));
    }

    #[test]
    fn answer_for_another_address_is_a_failure() {
        let mut guard = registered_guard(A, T0);
        guard.observe_public_address(B, T0 + HOUR);
        assert_eq!(guard.decide(T0 + HOUR), Decision::Update(B));
        guard.update_finished(UpdateAnswer::Good(Some(X)), T0 + HOUR);
        assert_eq!(guard.registered(), Some(A));
        assert_eq!(guard.stats().updates_failed, 1);
        assert_eq!(guard.decide(T0 + HOUR + 29 * MIN), Decision::Nothing);
        assert_eq!(guard.decide(T0 + HOUR + 30 * MIN), Decision::Update(B));
    }

    #[test]
    fn lost_answer_counts_as_transport_failure() {
        let mut guard = registered_guard(A, T0);
        guard.observe_public_address(B, T0 + HOUR);
        assert_eq!(guard.decide(T0 + HOUR), Decision::Update(B));
        assert_eq!(guard.decide(T0 + HOUR + 9 * MIN), Decision::Nothing);
        assert_eq!(guard.decide(T0 + HOUR + 10 * MIN), Decision::Nothing, "now in backoff");
        assert_eq!(guard.stats().updates_failed, 1);
        assert_eq!(guard.decide(T0 + HOUR + 40 * MIN), Decision::Update(B));
        // A late answer for the abandoned attempt does nothing harmful.
        guard.update_finished(UpdateAnswer::Good(Some(B)), T0 + HOUR + 41 * MIN);
        guard.update_finished(UpdateAnswer::BadAuth, T0 + HOUR + 42 * MIN);
        assert_eq!(guard.stop_reason(), None);
    }

    #[test]
    fn non_public_addresses_are_never_registered() {
        let mut guard = registered_guard(A, T0);
        for (index, address) in [[100, 64, 1, 2], [192, 168, 1, 1], [10, 0, 0, 1]].into_iter().enumerate() {
            let now = T0 + (index as u64 + 1) * HOUR;
            guard.observe_public_address(address, now);
            guard.observe_public_address(address, now);
            assert_eq!(guard.decide(now), Decision::Nothing);
            assert_eq!(guard.non_public_address(), Some(address));
        }
        assert_eq!(guard.stats().non_public_addresses, 3);
        assert_eq!(guard.registered(), Some(A));
    }

    #[test]
    fn dns_settling_and_missing_record() {
        let mut guard = registered_guard(A, T0);
        guard.observe_public_address(A, T0 + 5 * MIN);
        guard.observe_dns_address(Some(X), T0 + 5 * MIN);
        assert_eq!(guard.decide(T0 + 5 * MIN), Decision::Nothing, "settling: old answers ignored");
        guard.observe_dns_address(None, T0 + 10 * MIN);
        assert_eq!(guard.decide(T0 + 10 * MIN), Decision::Update(A), "record missing: corrective");
        assert_eq!(guard.last_reason(), Some(UpdateReason::Corrective));
    }

    #[test]
    fn corrections_stop_after_two_failures_and_reset_on_confirmation() {
        let mut guard = registered_guard(A, T0);
        let mut now = T0 + HOUR;
        // One flip, corrected, confirmed: the count resets.
        guard.observe_public_address(A, now);
        guard.observe_dns_address(Some(X), now);
        assert_eq!(guard.decide(now), Decision::Update(A));
        guard.update_finished(UpdateAnswer::Good(Some(A)), now);
        now += 10 * MIN;
        guard.observe_dns_address(Some(X), now);
        assert_eq!(guard.failed_corrections(), 1);
        assert_eq!(guard.decide(now), Decision::Update(A));
        guard.update_finished(UpdateAnswer::Good(Some(A)), now);
        now += 10 * MIN;
        guard.observe_dns_address(Some(A), now);
        assert_eq!(guard.failed_corrections(), 0);
        assert_eq!(guard.decide(now), Decision::Nothing);
        // A persistent contradiction: two failed corrections, then stop.
        now += HOUR;
        guard.observe_dns_address(Some(X), now);
        assert_eq!(guard.decide(now), Decision::Update(A));
        guard.update_finished(UpdateAnswer::Good(Some(A)), now);
        now += 10 * MIN;
        guard.observe_dns_address(Some(X), now);
        assert_eq!(guard.decide(now), Decision::Update(A));
        guard.update_finished(UpdateAnswer::Good(Some(A)), now);
        now += 10 * MIN;
        guard.observe_dns_address(Some(X), now);
        assert_eq!(guard.decide(now), Decision::Stopped(StopReason::DnsKeepsContradicting));
        assert_eq!(guard.decide(now + DAY), Decision::Stopped(StopReason::DnsKeepsContradicting));
        guard.owner_reset();
        guard.observe_dns_address(Some(A), now + DAY);
        assert_eq!(guard.decide(now + DAY), Decision::Nothing);
    }

    #[test]
    fn clock_going_backwards_does_not_block_forever() {
        let mut guard = registered_guard(A, T0 + 10 * 365 * DAY);
        guard.observe_public_address(B, T0);
        assert_eq!(guard.decide(T0), Decision::Nothing, "re-based: one spacing interval");
        assert_eq!(guard.decide(T0 + 10 * MIN), Decision::Update(B));
    }

    #[test]
    fn persisted_state_round_trips_and_refuses_garbage() {
        let mut guard = registered_guard(A, T0);
        guard.observe_public_address(B, T0 + HOUR);
        assert_eq!(guard.decide(T0 + HOUR), Decision::Update(B));
        guard.update_finished(UpdateAnswer::DnsError, T0 + HOUR);
        assert!(guard.take_dirty());
        assert!(!guard.take_dirty());
        let bytes = guard.encode();
        let restored = UpdateGuard::decode(GuardConfig::DEFAULT, &bytes).unwrap();
        assert_eq!(restored.encode(), bytes);
        assert_eq!(restored.registered(), Some(A));
        assert_eq!(restored.backoff_until_s(), guard.backoff_until_s());
        assert_eq!(restored.stats(), guard.stats());
        assert_eq!(UpdateGuard::decode(GuardConfig::DEFAULT, &bytes[..STATE_LENGTH - 1]), Err(DecodeError::Length));
        assert_eq!(UpdateGuard::decode(GuardConfig::DEFAULT, &[0u8; STATE_LENGTH]), Err(DecodeError::Magic));
        assert_eq!(UpdateGuard::decode(GuardConfig::DEFAULT, &[0xffu8; STATE_LENGTH]), Err(DecodeError::Magic));
        let mut version = bytes;
        version[4] = 3;
        assert_eq!(UpdateGuard::decode(GuardConfig::DEFAULT, &version), Err(DecodeError::Version));
        for position in 5..STATE_LENGTH {
            for bit in 0..8 {
                let mut flipped = bytes;
                flipped[position] ^= 1 << bit;
                assert!(UpdateGuard::decode(GuardConfig::DEFAULT, &flipped).is_err(), "{position} {bit}");
            }
        }
        // A valid checksum over an invalid field is still refused.
        let mut field = bytes;
        field[5] = 0x80;
        let crc = crc32(&field[..STATE_LENGTH - 4]);
        field[STATE_LENGTH - 4..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(UpdateGuard::decode(GuardConfig::DEFAULT, &field), Err(DecodeError::Field));
    }

    #[test]
    fn version_1_state_is_read_without_an_update() {
        // The 82 bytes an older firmware stored: the same fields up to the counters.
        let mut guard = registered_guard(A, T0);
        guard.observe_check_ip(&[("one.example", Some(A)), ("two.example", None)], T0);
        let current = guard.encode();
        let mut old = [0u8; STATE_LENGTH_VERSION_1];
        old[..STATE_LENGTH_VERSION_1 - 4].copy_from_slice(&current[..STATE_LENGTH_VERSION_1 - 4]);
        old[4] = 1;
        let crc = crc32(&old[..STATE_LENGTH_VERSION_1 - 4]);
        old[STATE_LENGTH_VERSION_1 - 4..].copy_from_slice(&crc.to_le_bytes());
        let mut restored = UpdateGuard::decode(GuardConfig::DEFAULT, &old).unwrap();
        assert_eq!(restored.registered(), Some(A));
        assert_eq!((restored.last_agreed(), restored.unreliable_checks()), (None, 0));
        assert_eq!(restored.reference_address(), Some(A), "judged against the registered address");
        restored.observe_public_address(A, T0 + HOUR);
        assert_eq!(restored.decide(T0 + HOUR), Decision::Nothing);
        old[5] = 0b1000; // the last-agreed flag did not exist in version 1
        let crc = crc32(&old[..STATE_LENGTH_VERSION_1 - 4]);
        old[STATE_LENGTH_VERSION_1 - 4..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(UpdateGuard::decode(GuardConfig::DEFAULT, &old), Err(DecodeError::Field));
        assert_eq!(UpdateGuard::decode(GuardConfig::DEFAULT, &current[..STATE_LENGTH_VERSION_1]), Err(DecodeError::Length));
    }

    const HOST: &str = "home.example.net";
    const FOREIGN_MX: &[(u16, &str)] = &[(10, "mx.elsewhere.example")];
    const OUR_MX: &[(u16, &str)] = &[(10, HOST)];

    /// One check as the firmware runs it: the check-IP answers, the DNS view judged, the
    /// alarms, then the decision (an update lands in the simulated record at once).
    fn check(
        guard: &mut UpdateGuard,
        world: &mut World,
        answers: &[(&str, Option<Ipv4>)],
        mx: &[(u16, &str)],
        now: u64,
    ) -> (Decision, CheckAlarms) {
        guard.observe_check_ip(answers, now);
        guard.observe_dns_address(Some(world.record), now);
        let records = [world.record];
        let verdict = guard.verify(HOST, &records, mx);
        let alarms = guard.alarms(&verdict, true, true);
        let decision = guard.decide(now);
        if let Decision::Update(address) = decision {
            world.updates += 1;
            world.record = address;
            guard.update_finished(UpdateAnswer::Good(Some(address)), now);
        }
        (decision, alarms)
    }

    #[test]
    fn a_source_listed_twice_is_no_quorum() {
        // The review's fake quorum: the same check-IP service listed twice "agreed" on B (the
        // old `agree(&[Some(B), Some(B)], 2)` said Agreed) and the record went to B.
        let mut guard = registered_guard(A, T0);
        let mut world = World { record: A, updates: 0 };
        let twice = [("checkip.example", Some(B)), ("CHECKIP.example.", Some(B))];
        for step in 1..=4 {
            let (decision, alarms) = check(&mut guard, &mut world, &twice, OUR_MX, T0 + step * HOUR);
            assert_eq!(decision, Decision::Nothing, "one service is one witness");
            assert_eq!(alarms.check_ip_unreliable, step >= 3, "step {step}");
        }
        assert_eq!((world.updates, world.record), (0, A));
        assert_eq!(guard.public_address(), None);
        // Two distinct hosts agreeing is a quorum.
        let (decision, alarms) =
            check(&mut guard, &mut world, &[("checkip.example", Some(B)), ("ip.other.example", Some(B))], OUR_MX, T0 + 5 * HOUR);
        assert_eq!(decision, Decision::Update(B));
        assert!(!alarms.check_ip_unreliable);
    }

    #[test]
    fn disagreement_still_judges_mx_and_the_a_record_against_the_last_agreed_address() {
        // The attacker breaks one source (junk, or a lie) and diverts the mail at the same
        // check. The old firmware skipped verify_dns without an agreed address: no alarm.
        for broken in [None, Some(X), Some([10, 0, 0, 1])] {
            let mut guard = registered_guard(A, T0);
            let mut world = World { record: A, updates: 0 };
            let (_, alarms) = check(&mut guard, &mut world, &[("one.example", Some(A)), ("two.example", Some(A))], OUR_MX, T0 + HOUR);
            assert_eq!((alarms.address_diverted, alarms.mx_diverted), (Some(false), Some(false)));
            assert_eq!(guard.last_agreed(), Some(A));
            world.record = X;
            let answers = [("one.example", Some(A)), ("two.example", broken)];
            let (decision, alarms) = check(&mut guard, &mut world, &answers, FOREIGN_MX, T0 + 2 * HOUR);
            assert_eq!(alarms.mx_diverted, Some(true), "MX alarm with source two {broken:?}");
            assert_eq!(alarms.address_diverted, Some(true), "A alarm with source two {broken:?}");
            assert_eq!(decision, Decision::Nothing, "no update on unverified information");
            assert_eq!(world.record, X);
            // The same after a reboot: the last agreed address is persisted.
            let mut guard = UpdateGuard::decode(GuardConfig::DEFAULT, &guard.encode()).unwrap();
            assert_eq!(guard.reference_address(), Some(A));
            let (_, alarms) = check(&mut guard, &mut world, &answers, FOREIGN_MX, T0 + 3 * HOUR);
            assert_eq!((alarms.address_diverted, alarms.mx_diverted), (Some(true), Some(true)));
        }
        // Never agreed, nothing registered: the A record cannot be judged, the MX still is.
        let mut guard = UpdateGuard::new(GuardConfig::DEFAULT);
        let mut world = World { record: X, updates: 0 };
        let (_, alarms) = check(&mut guard, &mut world, &[("one.example", Some(A)), ("two.example", Some(B))], FOREIGN_MX, T0);
        assert_eq!((alarms.address_diverted, alarms.mx_diverted), (None, Some(true)));
        // A new address agreed but not registered yet: a stale A record is no alarm.
        let mut guard = registered_guard(A, T0);
        guard.observe_check_ip(&[("one.example", Some(B)), ("two.example", Some(B))], T0 + HOUR);
        let verdict = guard.verify(HOST, &[A], OUR_MX);
        assert_eq!(guard.alarms(&verdict, true, true).address_diverted, Some(false));
        // Failed lookups judge nothing (the verdict's empty lists mean "not known").
        let verdict = guard.verify(HOST, &[], &[]);
        assert_eq!(guard.alarms(&verdict, false, false), CheckAlarms::default());
        let verdict = guard.verify(HOST, &[], FOREIGN_MX);
        let alarms = guard.alarms(&verdict, false, true);
        assert_eq!((alarms.address_diverted, alarms.mx_diverted, alarms.unreachable), (None, Some(true), false));
    }

    #[test]
    fn unreliable_sources_alert_after_three_checks_and_clear_on_agreement() {
        let mut guard = registered_guard(A, T0);
        let mut world = World { record: A, updates: 0 };
        let patterns: [&[(&str, Option<Ipv4>)]; 4] = [
            &[("one.example", Some(A)), ("two.example", None)],
            &[("one.example", Some(A)), ("two.example", Some(X))],
            &[("one.example", None), ("two.example", None)],
            &[("only.example", Some(A))],
        ];
        for pattern in patterns {
            for step in 1..=5u64 {
                let (_, alarms) = check(&mut guard, &mut world, pattern, OUR_MX, T0 + step * 10 * MIN);
                assert_eq!(alarms.check_ip_unreliable, step >= 3, "{pattern:?} step {step}");
            }
            // Survives a reboot (the firmware reloads the guard at every check).
            guard = UpdateGuard::decode(GuardConfig::DEFAULT, &guard.encode()).unwrap();
            assert!(guard.check_ip_unreliable());
            let (_, alarms) = check(&mut guard, &mut world, &[("one.example", Some(A)), ("two.example", Some(A))], OUR_MX, T0 + HOUR);
            assert!(!alarms.check_ip_unreliable, "agreement clears it");
            assert_eq!(guard.unreliable_checks(), 0);
        }
        assert_eq!(world.updates, 0);
    }

    #[test]
    fn server_side_failures_alert_after_two_in_a_row() {
        for failure in [UpdateAnswer::ServerError, UpdateAnswer::DnsError, UpdateAnswer::HttpStatus(503), UpdateAnswer::HttpStatus(500)] {
            let mut guard = registered_guard(A, T0);
            guard.observe_public_address(B, T0);
            let mut now = T0 + HOUR;
            let mut failures = 0;
            let mut alerted_after = None;
            let mut transport_failure_sent = false;
            while failures < 4 {
                if let Decision::Update(_) = guard.decide(now) {
                    // A transport failure in between neither counts nor resets.
                    if failures == 1 && !transport_failure_sent {
                        transport_failure_sent = true;
                        guard.update_finished(UpdateAnswer::TransportError, now);
                        assert_eq!(guard.server_failures(), 1);
                        now += 5 * MIN;
                        continue;
                    }
                    guard.update_finished(failure, now);
                    failures += 1;
                    if guard.update_server_failing() {
                        alerted_after.get_or_insert(failures);
                    }
                    // The count survives a reboot.
                    guard = UpdateGuard::decode(GuardConfig::DEFAULT, &guard.encode()).unwrap();
                    guard.observe_public_address(B, now);
                }
                now += 5 * MIN;
            }
            assert_eq!(alerted_after, Some(2), "{failure:?}");
            // A success ends it.
            now += DAY;
            assert_eq!(guard.decide(now), Decision::Update(B));
            guard.update_finished(UpdateAnswer::Good(Some(B)), now);
            assert!(!guard.update_server_failing());
            assert_eq!(guard.server_failures(), 0);
        }
        // Transport failures alone never raise it (the line or TLS is at fault, alerted elsewhere).
        let mut guard = registered_guard(A, T0);
        guard.observe_public_address(B, T0);
        for day in 1..5 {
            if let Decision::Update(_) = guard.decide(T0 + day * DAY) {
                guard.update_finished(UpdateAnswer::TransportError, T0 + day * DAY);
            }
        }
        assert!(!guard.update_server_failing());
    }

    #[test]
    fn simulated_day_with_an_attacker_who_breaks_one_source() {
        // Checks every 5 minutes. From 20:00 the attacker answers junk at the second check-IP
        // service and points the A record at X and the MX at their own host. Every check from
        // then on must raise both diversion alarms; the third also says the sources are unreliable.
        let midnight = T0 - T0 % DAY;
        let mut guard =
            UpdateGuard::decode(GuardConfig::DEFAULT, &registered_guard(A, midnight - DAY).encode()).unwrap();
        let mut world = World { record: A, updates: 0 };
        let (mut diversion_checks, mut unreliable_checks, mut attacked_checks) = (0, 0, 0);
        for step in 0..(24 * 12) {
            let now = midnight + step * 5 * MIN;
            let attacked = now >= midnight + 20 * HOUR;
            if attacked {
                world.record = X;
            }
            let answers = [("one.example", Some(A)), ("two.example", if attacked { None } else { Some(A) })];
            let (_, alarms) = check(&mut guard, &mut world, &answers, if attacked { FOREIGN_MX } else { OUR_MX }, now);
            if attacked {
                attacked_checks += 1;
                if alarms.address_diverted == Some(true) && alarms.mx_diverted == Some(true) {
                    diversion_checks += 1;
                }
            } else {
                assert_eq!((alarms.address_diverted, alarms.mx_diverted), (Some(false), Some(false)));
            }
            unreliable_checks += u32::from(alarms.check_ip_unreliable);
        }
        println!(
            "simulated day, one source broken and mail diverted from 20:00: {diversion_checks} of {attacked_checks} checks \
             raised both diversion alarms, {unreliable_checks} said the sources are unreliable, {} updates",
            world.updates
        );
        assert_eq!(diversion_checks, attacked_checks);
        assert_eq!(unreliable_checks, attacked_checks - 2);
        assert_eq!(world.updates, 0, "no update on unverified information");
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    /// The simulated provider and DNS: updates land in the record at once; a third party may
    /// overwrite it.
    struct World {
        record: Ipv4,
        updates: u32,
    }

    fn tick(guard: &mut UpdateGuard, world: &mut World, public: Ipv4, now: u64) -> Decision {
        guard.observe_public_address(public, now);
        guard.observe_dns_address(Some(world.record), now);
        let decision = guard.decide(now);
        if let Decision::Update(address) = decision {
            world.updates += 1;
            world.record = address;
            guard.update_finished(UpdateAnswer::Good(Some(address)), now);
        }
        decision
    }

    #[test]
    fn simulated_day() {
        // Booted from saved state: A registered yesterday. Checks every 5 minutes for 24 h;
        // the line gets a new address B at noon; at 20:00 a third party points the record at X
        // once; at 15:00 the appliance reboots.
        let midnight = T0 - T0 % DAY;
        let saved = registered_guard(A, midnight - DAY).encode();
        let mut guard = UpdateGuard::decode(GuardConfig::DEFAULT, &saved).unwrap();
        let mut world = World { record: A, updates: 0 };
        let mut stopped = 0;
        for step in 0..(24 * 12) {
            let now = midnight + step * 5 * MIN;
            let public = if now < midnight + 12 * HOUR { A } else { B };
            if now == midnight + 20 * HOUR {
                world.record = X;
            }
            if now == midnight + 15 * HOUR {
                guard = UpdateGuard::decode(GuardConfig::DEFAULT, &guard.encode()).unwrap();
            }
            if let Decision::Stopped(_) = tick(&mut guard, &mut world, public, now) {
                stopped += 1;
            }
        }
        println!(
            "simulated day (288 checks, address change at noon, one third-party A flip at 20:00, reboot at 15:00): \
             {} updates ({} corrective), {} stopped decisions",
            world.updates,
            guard.stats().corrective_updates,
            stopped
        );
        assert_eq!(world.updates, 2);
        assert_eq!(guard.stats().corrective_updates, 1);
        assert_eq!(stopped, 0);
        assert_eq!(world.record, B);
        assert_eq!(guard.failed_corrections(), 0);
    }

    #[test]
    fn simulated_day_with_a_persistent_hijacker() {
        // As above, but from 20:00 the third party re-points the record at X before every check.
        let midnight = T0 - T0 % DAY;
        let mut guard =
            UpdateGuard::decode(GuardConfig::DEFAULT, &registered_guard(A, midnight - DAY).encode()).unwrap();
        let mut world = World { record: A, updates: 0 };
        let mut first_stop = None;
        for step in 0..(24 * 12) {
            let now = midnight + step * 5 * MIN;
            let public = if now < midnight + 12 * HOUR { A } else { B };
            if now >= midnight + 20 * HOUR {
                world.record = X;
            }
            if let Decision::Stopped(reason) = tick(&mut guard, &mut world, public, now) {
                assert_eq!(reason, StopReason::DnsKeepsContradicting);
                first_stop.get_or_insert(now);
            }
        }
        println!(
            "simulated day with a persistent hijacker from 20:00: {} updates ({} corrective), stopped at {:?} s after 20:00",
            world.updates,
            guard.stats().corrective_updates,
            first_stop.map(|t| t - midnight - 20 * HOUR)
        );
        assert_eq!(world.updates, 3, "noon + two corrections");
        assert_eq!(guard.stats().corrective_updates, 2);
        assert_eq!(first_stop, Some(midnight + 20 * HOUR + 20 * MIN));
    }

    #[derive(Clone, Debug)]
    enum Event {
        Public(u8),
        Dns(Option<u8>),
        Decide,
        Finish(u8),
        Reset,
        Reboot,
        Wait(u16),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0u8..4).prop_map(Event::Public),
            proptest::option::of(0u8..4).prop_map(Event::Dns),
            Just(Event::Decide),
            Just(Event::Decide),
            (0u8..16).prop_map(Event::Finish),
            Just(Event::Reset),
            Just(Event::Reboot),
            (0u16..4000).prop_map(Event::Wait),
        ]
    }

    fn address(index: u8) -> Ipv4 {
        [[203, 0, 113, 5], [203, 0, 113, 77], [198, 51, 100, 66], [192, 168, 1, 1]][usize::from(index % 4)]
    }

    fn answer(index: u8, address: Ipv4) -> UpdateAnswer {
        [
            UpdateAnswer::Good(Some(address)),
            UpdateAnswer::Good(None),
            UpdateAnswer::NoChange(Some(address)),
            UpdateAnswer::Good(Some([1, 1, 1, 1])),
            UpdateAnswer::BadAuth,
            UpdateAnswer::Abuse,
            UpdateAnswer::ServerError,
            UpdateAnswer::DnsError,
            UpdateAnswer::Unknown,
            UpdateAnswer::TransportError,
            UpdateAnswer::HttpStatus(502),
        ][usize::from(index) % 11]
    }

    proptest! {
        #[test]
        fn invariants_hold_for_any_event_sequence(events in proptest::collection::vec(event(), 0..200)) {
            let mut guard = UpdateGuard::new(GuardConfig::DEFAULT);
            let mut now = T0;
            let mut last_update: Option<u64> = None;
            let mut in_flight: Option<Ipv4> = None;
            for event in events {
                match event {
                    Event::Public(index) => guard.observe_public_address(address(index), now),
                    Event::Dns(index) => guard.observe_dns_address(index.map(address), now),
                    Event::Decide => match guard.decide(now) {
                        Decision::Update(ip) => {
                            prop_assert!(is_public(ip));
                            prop_assert!(guard.stop_reason().is_none());
                            if let Some(last) = last_update {
                                prop_assert!(now - last >= GuardConfig::DEFAULT.min_spacing_s);
                            }
                            last_update = Some(now);
                            in_flight = Some(ip);
                        }
                        Decision::Stopped(reason) => prop_assert_eq!(guard.stop_reason(), Some(reason)),
                        Decision::Nothing => {}
                    },
                    Event::Finish(index) => {
                        if let Some(ip) = in_flight.take() {
                            guard.update_finished(answer(index, ip), now);
                        }
                    }
                    Event::Reset => guard.owner_reset(),
                    Event::Reboot => {
                        let public = guard.public_address();
                        guard = UpdateGuard::decode(GuardConfig::DEFAULT, &guard.encode()).unwrap();
                        in_flight = None;
                        if let Some(ip) = public {
                            guard.observe_public_address(ip, now);
                        }
                    }
                    Event::Wait(seconds) => now += u64::from(seconds),
                }
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = UpdateGuard::decode(GuardConfig::DEFAULT, &bytes);
        }
    }
}
