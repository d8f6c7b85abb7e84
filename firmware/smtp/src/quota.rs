//! The hourly message quota of LAN clients: a fixed table of per-client windows (one hour from
//! a client's first message), so a compromised PC cannot turn the line into a spam cannon.
//!
//! The table never forgets a client whose hour is still running: when it is full, a new
//! client is refused ([`QuotaDecision::TableFull`], answered like a used-up quota with `450`,
//! so an honest client retries later) rather than a tracked client's count being dropped,
//! which would give that client a fresh quota. Clients are counted like the
//! [`ConnectionCounter`](crate::ConnectionCounter) counts them (IPv6 per /64). The time is
//! passed in (seconds of a monotonic clock).

use core::net::IpAddr;

use heapless::Vec;

use crate::connection::client_key;

/// The length of a quota window in seconds.
pub const QUOTA_WINDOW_SECONDS: u64 = 3600;

/// Whether a client may submit another message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaDecision {
    /// Within its quota.
    Allowed,
    /// It has sent `limit` messages in its current hour.
    Exhausted,
    /// It has no window and every slot of the table holds a running hour of another client.
    TableFull,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    client: u128,
    start_seconds: u64,
    messages: u16,
}

/// Per-client message counts for the running hour of up to `CLIENTS` clients.
#[derive(Clone, Debug, Default)]
pub struct HourlyQuota<const CLIENTS: usize> {
    windows: Vec<Window, CLIENTS>,
}

impl<const CLIENTS: usize> HourlyQuota<CLIENTS> {
    /// An empty table.
    pub const fn new() -> Self {
        HourlyQuota { windows: Vec::new() }
    }

    /// Whether `client` may submit another message (at most `limit` an hour). An allowed
    /// client without a window gets one now, so that its message can be counted at commit.
    pub fn check(&mut self, client: IpAddr, limit: u16, now_seconds: u64) -> QuotaDecision {
        match self.window(client, now_seconds) {
            Some(window) if window.messages >= limit => QuotaDecision::Exhausted,
            Some(_) => QuotaDecision::Allowed,
            None => QuotaDecision::TableFull,
        }
    }

    /// Counts a message `client` has submitted; false when it could not be counted (no
    /// window and the table full).
    pub fn record(&mut self, client: IpAddr, now_seconds: u64) -> bool {
        match self.window(client, now_seconds) {
            Some(window) => {
                window.messages = window.messages.saturating_add(1);
                true
            }
            None => false,
        }
    }

    /// Clients with a running window.
    pub fn tracked_clients(&self) -> usize {
        self.windows.len()
    }

    /// The client's running window, opened now if it has none and there is room.
    fn window(&mut self, client: IpAddr, now_seconds: u64) -> Option<&mut Window> {
        self.windows.retain(|window| now_seconds.saturating_sub(window.start_seconds) < QUOTA_WINDOW_SECONDS);
        let key = client_key(client);
        let index = match self.windows.iter().position(|window| window.client == key) {
            Some(index) => index,
            None => {
                self.windows.push(Window { client: key, start_seconds: now_seconds, messages: 0 }).ok()?;
                self.windows.len() - 1
            }
        };
        self.windows.get_mut(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(number: u8) -> IpAddr {
        IpAddr::from([192, 168, 1, number])
    }

    #[test]
    fn counts_up_to_the_limit_then_refuses_until_the_hour_ends() {
        let mut quota: HourlyQuota<4> = HourlyQuota::new();
        for _ in 0..3 {
            assert_eq!(quota.check(client(1), 3, 100), QuotaDecision::Allowed);
            assert!(quota.record(client(1), 100));
        }
        assert_eq!(quota.check(client(1), 3, 100), QuotaDecision::Exhausted);
        assert_eq!(quota.check(client(1), 3, 100 + QUOTA_WINDOW_SECONDS - 1), QuotaDecision::Exhausted);
        assert_eq!(quota.check(client(1), 3, 100 + QUOTA_WINDOW_SECONDS), QuotaDecision::Allowed);
        assert_eq!(quota.check(client(2), 3, 100), QuotaDecision::Allowed, "other clients have their own quota");
    }

    #[test]
    fn a_full_table_refuses_new_clients_and_keeps_the_old_counts() {
        let mut quota: HourlyQuota<2> = HourlyQuota::new();
        assert_eq!(quota.check(client(1), 1, 0), QuotaDecision::Allowed);
        assert!(quota.record(client(1), 0));
        assert_eq!(quota.check(client(2), 1, 10), QuotaDecision::Allowed);
        // A third client finds the table full: refused, and the first client keeps its count.
        assert_eq!(quota.check(client(3), 1, 20), QuotaDecision::TableFull);
        assert!(!quota.record(client(3), 20));
        assert_eq!(quota.check(client(1), 1, 30), QuotaDecision::Exhausted, "client 1's quota was not reset");
        assert_eq!(quota.tracked_clients(), 2);
        // Once the first window ends, its slot is free for the new client.
        assert_eq!(quota.check(client(3), 1, QUOTA_WINDOW_SECONDS), QuotaDecision::Allowed);
        assert_eq!(quota.check(client(2), 1, QUOTA_WINDOW_SECONDS), QuotaDecision::Allowed, "client 2's hour still runs");
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let mut quota: HourlyQuota<2> = HourlyQuota::new();
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        assert_eq!(quota.check(first, 1, 0), QuotaDecision::Allowed);
        assert!(quota.record(first, 0));
        assert_eq!(quota.check(same_64, 1, 0), QuotaDecision::Exhausted);
        assert_eq!(quota.tracked_clients(), 1);
    }
}
