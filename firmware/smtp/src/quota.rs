//! The hourly message quota of submitting clients: fixed tables of per-client windows (one
//! hour from a client's first message), so a compromised PC or a stolen password cannot turn
//! the line into a spam cannon. [`HourlyQuota`] counts per address or per user;
//! [`SubmissionQuota`] holds one of each and counts a message against both (the address's
//! quota, and the authenticated user's, so that a user cannot multiply its quota over many
//! devices, nor one device over many users).
//!
//! A table never forgets a client whose hour is still running: when it is full, a new
//! client is refused ([`QuotaDecision::TableFull`], answered like a used-up quota with `450`,
//! so an honest client retries later) rather than a tracked client's count being dropped,
//! which would give that client a fresh quota. Addresses are counted like the
//! [`ConnectionCounter`](crate::ConnectionCounter) counts them (IPv6 per /64); users by a
//! 64-bit FNV-1a hash of their name in ASCII lower case (two provisioned names sharing a hash
//! would share a quota: conservative, and with a handful of users never seen). The time is
//! passed in (seconds of a monotonic clock).

use core::net::IpAddr;

use heapless::Vec;

use crate::connection::client_key;
use crate::policy::ClientInfo;

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
        self.check_key(client_key(client), limit, now_seconds)
    }

    /// Whether the authenticated `user` may submit another message (at most `limit` an hour).
    pub fn check_user(&mut self, user: &str, limit: u16, now_seconds: u64) -> QuotaDecision {
        self.check_key(user_key(user), limit, now_seconds)
    }

    /// Counts a message the authenticated `user` has submitted; false when it could not be
    /// counted.
    pub fn record_user(&mut self, user: &str, now_seconds: u64) -> bool {
        self.record_key(user_key(user), now_seconds)
    }

    fn check_key(&mut self, key: u128, limit: u16, now_seconds: u64) -> QuotaDecision {
        match self.window(key, now_seconds) {
            Some(window) if window.messages >= limit => QuotaDecision::Exhausted,
            Some(_) => QuotaDecision::Allowed,
            None => QuotaDecision::TableFull,
        }
    }

    /// Counts a message `client` has submitted; false when it could not be counted (no
    /// window and the table full).
    pub fn record(&mut self, client: IpAddr, now_seconds: u64) -> bool {
        self.record_key(client_key(client), now_seconds)
    }

    fn record_key(&mut self, key: u128, now_seconds: u64) -> bool {
        match self.window(key, now_seconds) {
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
    fn window(&mut self, key: u128, now_seconds: u64) -> Option<&mut Window> {
        self.windows.retain(|window| now_seconds.saturating_sub(window.start_seconds) < QUOTA_WINDOW_SECONDS);
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

/// The counting key of a user name (see the module doc).
fn user_key(user: &str) -> u128 {
    let hash = user.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3));
    u128::from(hash)
}

/// The hourly quotas of a submission service: per address (`ADDRESSES` tracked) and per
/// authenticated user (`USERS` tracked). A message must fit both.
#[derive(Clone, Debug, Default)]
pub struct SubmissionQuota<const ADDRESSES: usize, const USERS: usize> {
    addresses: HourlyQuota<ADDRESSES>,
    users: HourlyQuota<USERS>,
}

impl<const ADDRESSES: usize, const USERS: usize> SubmissionQuota<ADDRESSES, USERS> {
    /// Empty tables.
    pub const fn new() -> Self {
        SubmissionQuota { addresses: HourlyQuota::new(), users: HourlyQuota::new() }
    }

    /// Whether `client` may submit another message: at most `per_address` an hour from its
    /// address and, if it authenticated, at most `per_user` an hour as its user. The first
    /// refusal found is the answer.
    pub fn check(&mut self, client: &ClientInfo<'_>, per_address: u16, per_user: u16, now_seconds: u64) -> QuotaDecision {
        match self.addresses.check(client.address, per_address, now_seconds) {
            QuotaDecision::Allowed => {}
            refused => return refused,
        }
        match client.authenticated_user {
            Some(user) => self.users.check_user(user, per_user, now_seconds),
            None => QuotaDecision::Allowed,
        }
    }

    /// Counts a message `client` submitted against its address and its user; false when
    /// either could not be counted.
    pub fn record(&mut self, client: &ClientInfo<'_>, now_seconds: u64) -> bool {
        let address = self.addresses.record(client.address, now_seconds);
        let user = client.authenticated_user.is_none_or(|user| self.users.record_user(user, now_seconds));
        address && user
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

    #[test]
    fn users_count_apart_from_addresses() {
        let mut quota: SubmissionQuota<4, 4> = SubmissionQuota::new();
        let alice_at = |number: u8| ClientInfo { address: client(number), tls_active: true, authenticated_user: Some("alice") };
        // Alice may send 2 an hour as a user, from any address; each address may send 5.
        assert_eq!(quota.check(&alice_at(1), 5, 2, 0), QuotaDecision::Allowed);
        assert!(quota.record(&alice_at(1), 0));
        assert_eq!(quota.check(&alice_at(2), 5, 2, 10), QuotaDecision::Allowed);
        assert!(quota.record(&alice_at(2), 10));
        assert_eq!(quota.check(&alice_at(3), 5, 2, 20), QuotaDecision::Exhausted, "a new device does not give her a new quota");
        let alice_upper = ClientInfo { authenticated_user: Some("ALICE"), ..alice_at(3) };
        assert_eq!(quota.check(&alice_upper, 5, 2, 20), QuotaDecision::Exhausted, "names count without regard to case");
        let bob = ClientInfo { authenticated_user: Some("bob"), ..alice_at(1) };
        assert_eq!(quota.check(&bob, 5, 2, 20), QuotaDecision::Allowed, "bob has his own quota");
        // The address quota still applies to an authenticated user.
        let anonymous = ClientInfo { authenticated_user: None, ..alice_at(1) };
        assert!(quota.record(&anonymous, 30));
        assert_eq!(quota.check(&bob, 2, 2, 30), QuotaDecision::Exhausted, "address 1 has sent 2");
        assert_eq!(quota.check(&alice_at(1), 5, 2, QUOTA_WINDOW_SECONDS), QuotaDecision::Allowed, "after her hour");
    }
}
