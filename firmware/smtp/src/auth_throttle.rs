//! Failed-AUTH throttling beside the connection counter: failures counted per source address
//! (IPv6 per /64, like [`ConnectionCounter`](crate::ConnectionCounter)) in a fixed table,
//! with a growing delay before each `535`, an alert once a threshold is crossed, and a block
//! of further AUTH attempts from an address that failed too often. Nothing sleeps here and
//! no clock is read: the caller passes monotonic milliseconds, waits the delay it is given
//! (by handing it to [`ServerSession::authentication_result`](crate::ServerSession::authentication_result)),
//! and asks [`AuthThrottle::admit`] from its [`SessionPolicy::may_authenticate`](crate::SessionPolicy::may_authenticate).
//!
//! The rules, all in [`ThrottleSettings`]:
//! - an address's failures count in a window (an hour by default) from its first failure;
//! - the `n`th failure in the window waits `first_delay × 2^(n-1)`, at most `delay_cap`
//!   (1 s, 2 s, 4 s … 32 s by default) before the `535` goes out;
//! - at `alert_failures` failures the address's alert is due, once per window;
//! - at `block_failures` failures the address may not try AUTH for `block` (15 min by
//!   default): the session answers `421 4.7.0` and closes;
//! - all addresses together: at `global_alert_failures` failures in a window an alert is due
//!   (once per window), and from then on every failure, from any address, waits the full cap.
//!
//! A success does not clear an address's failures (someone with one valid account must not
//! be able to reset the count between guesses at other accounts); they expire with the window.
//!
//! When the table is full, the entry with the oldest last failure is evicted (its address
//! starts afresh). This is the choice that never fails closed for legitimate users (a table
//! of blocked attacker addresses never locks a new address out of AUTH) and never fails open
//! for the attacker: the failures of an evicted address still count in the all-addresses
//! total, so an attacker rotating through more addresses than the table holds crosses the
//! global threshold and waits the full cap for every guess. With the connection counter's
//! per-listener session limit `S` and the cap `C`, guessing is bounded by `S` guesses per `C`
//! (4 sessions, 32 s: 7.5 a minute) plus the session's error limit closing each connection;
//! never unlimited.

use core::net::IpAddr;

use heapless::Vec;

use crate::connection::client_key;

/// The throttle's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// The delay before the `535` of an address's first failure in its window.
    pub first_delay_milliseconds: u64,
    /// The longest delay.
    pub delay_cap_milliseconds: u64,
    /// Failures of one address in its window at which its alert is due (0: never).
    pub alert_failures: u32,
    /// Failures of one address in its window at which it is blocked (0: never).
    pub block_failures: u32,
    /// How long failures count.
    pub window_milliseconds: u64,
    /// How long a blocked address may not try AUTH.
    pub block_milliseconds: u64,
    /// Failures of all addresses together in a window at which the global alert is due and
    /// every further failure waits the cap (0: never).
    pub global_alert_failures: u32,
}

impl ThrottleSettings {
    /// 1 s doubling to 32 s, an alert at 5 failures, a 15-minute block at 10, one-hour
    /// windows, the global alert at 20.
    pub const DEFAULT: ThrottleSettings = ThrottleSettings {
        first_delay_milliseconds: 1000,
        delay_cap_milliseconds: 32_000,
        alert_failures: 5,
        block_failures: 10,
        window_milliseconds: 60 * 60 * 1000,
        block_milliseconds: 15 * 60 * 1000,
        global_alert_failures: 20,
    };
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings::DEFAULT
    }
}

/// Whether an address may try AUTH now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthAdmission {
    /// Go on.
    Permitted,
    /// Blocked until this monotonic millisecond time (`421 4.7.0` and close).
    Blocked {
        /// When the block ends.
        until_milliseconds: u64,
    },
}

/// What a failure means for its answer and for the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureResponse {
    /// Wait this long before the `535` goes out.
    pub delay_milliseconds: u64,
    /// This address crossed the alert threshold (once per window).
    pub client_alert_due: bool,
    /// All addresses together crossed the global threshold (once per window).
    pub global_alert_due: bool,
    /// This address is blocked now.
    pub client_blocked: bool,
    /// Failures of this address in its window, this one included.
    pub client_failures: u32,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    client: u128,
    window_start: u64,
    last_failure: u64,
    failures: u32,
    blocked_until: u64,
    alerted: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct GlobalWindow {
    start: u64,
    failures: u32,
    alerted: bool,
}

/// Failed-AUTH counts of up to `CLIENTS` addresses and of all addresses together.
#[derive(Clone, Debug)]
pub struct AuthThrottle<const CLIENTS: usize> {
    settings: ThrottleSettings,
    entries: Vec<Entry, CLIENTS>,
    global: GlobalWindow,
}

impl<const CLIENTS: usize> AuthThrottle<CLIENTS> {
    /// An empty table.
    pub const fn new(settings: ThrottleSettings) -> Self {
        AuthThrottle { settings, entries: Vec::new(), global: GlobalWindow { start: 0, failures: 0, alerted: false } }
    }

    /// The settings in force.
    pub fn settings(&self) -> ThrottleSettings {
        self.settings
    }

    /// Whether `client` may try AUTH now.
    pub fn admit(&mut self, client: IpAddr, now_milliseconds: u64) -> AuthAdmission {
        self.forget_expired(now_milliseconds);
        let key = client_key(client);
        match self.entries.iter().find(|entry| entry.client == key) {
            Some(entry) if entry.blocked_until > now_milliseconds => AuthAdmission::Blocked { until_milliseconds: entry.blocked_until },
            _ => AuthAdmission::Permitted,
        }
    }

    /// Counts a failed AUTH from `client` and says how long to wait before answering it.
    pub fn record_failure(&mut self, client: IpAddr, now_milliseconds: u64) -> FailureResponse {
        let settings = self.settings;
        self.forget_expired(now_milliseconds);
        if now_milliseconds.saturating_sub(self.global.start) >= settings.window_milliseconds || self.global.failures == 0 {
            self.global = GlobalWindow { start: now_milliseconds, failures: 0, alerted: false };
        }
        self.global.failures = self.global.failures.saturating_add(1);
        let global_crossed = settings.global_alert_failures > 0 && self.global.failures >= settings.global_alert_failures;
        let global_alert_due = global_crossed && !self.global.alerted;
        self.global.alerted |= global_crossed;

        let key = client_key(client);
        let index = match self.entries.iter().position(|entry| entry.client == key) {
            Some(index) => index,
            None => {
                if self.entries.is_full() {
                    // Full: evict the entry whose last failure is oldest (see the module doc).
                    let oldest = (0..self.entries.len()).min_by_key(|&index| self.entries[index].last_failure).unwrap_or(0);
                    self.entries.swap_remove(oldest);
                }
                let entry = Entry { client: key, window_start: now_milliseconds, last_failure: now_milliseconds, failures: 0, blocked_until: 0, alerted: false };
                // Cannot fail: a slot was just made free (a table of no slots counts nothing).
                if self.entries.push(entry).is_err() {
                    return FailureResponse {
                        delay_milliseconds: settings.delay_cap_milliseconds,
                        client_alert_due: false,
                        global_alert_due,
                        client_blocked: false,
                        client_failures: 0,
                    };
                }
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[index];
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now_milliseconds;
        let client_crossed = settings.alert_failures > 0 && entry.failures >= settings.alert_failures;
        let client_alert_due = client_crossed && !entry.alerted;
        entry.alerted |= client_crossed;
        let client_blocked = settings.block_failures > 0 && entry.failures >= settings.block_failures;
        if client_blocked {
            entry.blocked_until = now_milliseconds.saturating_add(settings.block_milliseconds);
        }
        let doubling = 1u64 << (entry.failures - 1).min(63);
        let mut delay = settings.first_delay_milliseconds.saturating_mul(doubling).min(settings.delay_cap_milliseconds);
        if global_crossed {
            delay = settings.delay_cap_milliseconds;
        }
        FailureResponse { delay_milliseconds: delay, client_alert_due, global_alert_due, client_blocked, client_failures: entry.failures }
    }

    /// Addresses with failures in a running window or a running block.
    pub fn tracked_clients(&self) -> usize {
        self.entries.len()
    }

    /// Failures of all addresses together in the running global window.
    pub fn global_failures(&self, now_milliseconds: u64) -> u32 {
        if now_milliseconds.saturating_sub(self.global.start) >= self.settings.window_milliseconds {
            0
        } else {
            self.global.failures
        }
    }

    fn forget_expired(&mut self, now_milliseconds: u64) {
        let window = self.settings.window_milliseconds;
        self.entries.retain(|entry| now_milliseconds.saturating_sub(entry.window_start) < window || entry.blocked_until > now_milliseconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(number: u8) -> IpAddr {
        IpAddr::from([192, 168, 1, number])
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut throttle: AuthThrottle<4> = AuthThrottle::new(ThrottleSettings { block_failures: 0, ..ThrottleSettings::DEFAULT });
        let delays: std::vec::Vec<u64> = (0..8).map(|_| throttle.record_failure(client(1), 5000).delay_milliseconds).collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000, 16_000, 32_000, 32_000, 32_000]);
        assert_eq!(throttle.record_failure(client(2), 5000).delay_milliseconds, 1000, "another address has its own count");
        for failure in 9..200 {
            assert_eq!(throttle.record_failure(client(1), 5000).delay_milliseconds, 32_000, "failure {failure}: the doubling never wraps");
        }
    }

    #[test]
    fn the_alert_is_due_once_per_window() {
        let mut throttle: AuthThrottle<4> = AuthThrottle::new(ThrottleSettings::DEFAULT);
        let alerts: std::vec::Vec<bool> = (0..7).map(|_| throttle.record_failure(client(1), 0).client_alert_due).collect();
        assert_eq!(alerts, [false, false, false, false, true, false, false]);
        // After the window (and after the block, which ends first here), a new count and a new alert.
        let later = ThrottleSettings::DEFAULT.window_milliseconds;
        let alerts: std::vec::Vec<bool> = (0..5).map(|_| throttle.record_failure(client(1), later).client_alert_due).collect();
        assert_eq!(alerts, [false, false, false, false, true]);
    }

    #[test]
    fn too_many_failures_block_the_address_for_a_while() {
        let settings = ThrottleSettings::DEFAULT;
        let mut throttle: AuthThrottle<4> = AuthThrottle::new(settings);
        for failure in 1..settings.block_failures {
            assert!(!throttle.record_failure(client(1), 1000).client_blocked, "failure {failure}");
            assert_eq!(throttle.admit(client(1), 1000), AuthAdmission::Permitted);
        }
        assert!(throttle.record_failure(client(1), 1000).client_blocked);
        let until = 1000 + settings.block_milliseconds;
        assert_eq!(throttle.admit(client(1), 1000), AuthAdmission::Blocked { until_milliseconds: until });
        assert_eq!(throttle.admit("::ffff:192.168.1.1".parse().unwrap(), until - 1), AuthAdmission::Blocked { until_milliseconds: until });
        assert_eq!(throttle.admit(client(2), 1000), AuthAdmission::Permitted);
        assert_eq!(throttle.admit(client(1), until), AuthAdmission::Permitted);
    }

    #[test]
    fn a_block_outlives_the_window() {
        let settings = ThrottleSettings { block_milliseconds: 2 * ThrottleSettings::DEFAULT.window_milliseconds, ..ThrottleSettings::DEFAULT };
        let mut throttle: AuthThrottle<4> = AuthThrottle::new(settings);
        for _ in 0..settings.block_failures {
            throttle.record_failure(client(1), 0);
        }
        assert!(matches!(throttle.admit(client(1), settings.window_milliseconds + 1), AuthAdmission::Blocked { .. }));
    }

    #[test]
    fn a_full_table_evicts_the_oldest_and_rotation_meets_the_global_cap() {
        let settings = ThrottleSettings { global_alert_failures: 7, ..ThrottleSettings::DEFAULT };
        let mut throttle: AuthThrottle<2> = AuthThrottle::new(settings);
        throttle.record_failure(client(1), 0);
        throttle.record_failure(client(2), 10);
        throttle.record_failure(client(2), 20);
        // Client 3 evicts client 1 (oldest last failure); client 2's count is kept.
        assert_eq!(throttle.record_failure(client(3), 30).delay_milliseconds, 1000);
        assert_eq!(throttle.tracked_clients(), 2);
        assert_eq!(throttle.record_failure(client(2), 40).client_failures, 3);
        // Rotating addresses: each new address starts at 1 s until the global count reaches 7,
        // then every failure waits the cap, and the global alert is due once (failures 6, 7, 8).
        let sixth = throttle.record_failure(client(4), 50);
        assert_eq!((sixth.delay_milliseconds, sixth.global_alert_due), (1000, false));
        let seventh = throttle.record_failure(client(5), 60);
        assert_eq!((seventh.delay_milliseconds, seventh.global_alert_due), (32_000, true));
        let eighth = throttle.record_failure(client(6), 70);
        assert_eq!((eighth.delay_milliseconds, eighth.global_alert_due), (32_000, false));
        assert_eq!(throttle.global_failures(70), 8);
        assert_eq!(throttle.global_failures(settings.window_milliseconds + 100), 0);
    }

    #[test]
    fn failures_expire_with_the_window() {
        let settings = ThrottleSettings::DEFAULT;
        let mut throttle: AuthThrottle<4> = AuthThrottle::new(settings);
        throttle.record_failure(client(1), 0);
        throttle.record_failure(client(1), 0);
        assert_eq!(throttle.record_failure(client(1), settings.window_milliseconds).delay_milliseconds, 1000);
    }
}
