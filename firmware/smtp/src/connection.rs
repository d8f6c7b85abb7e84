//! Connection counting for the listener: sessions per client and in total.
//!
//! IPv4 clients are counted per address, IPv6 clients per /64 (one host usually owns a
//! whole /64, so counting single IPv6 addresses would not limit it).

use core::net::IpAddr;

use heapless::Vec;

/// Why a new connection is refused; the listener sends [`ConnectionRefusal::reply`] and closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// All session slots are busy.
    TooManySessions,
    /// This client already has its share of sessions.
    TooManySessionsFromClient,
}

impl ConnectionRefusal {
    /// The greeting that refuses the connection (`421 4.7.0`, RFC 5321 3.1: a server may
    /// answer 421 instead of 220 and close).
    pub fn reply(&self) -> &'static [u8] {
        match self {
            ConnectionRefusal::TooManySessions => b"421 4.7.0 Too many connections, try again later\r\n",
            ConnectionRefusal::TooManySessionsFromClient => {
                b"421 4.7.0 Too many connections from your address, try again later\r\n"
            }
        }
    }
}

/// Counts open sessions; `CLIENTS` is the number of distinct clients tracked (at least the
/// total number of sessions).
#[derive(Clone, Debug)]
pub struct ConnectionCounter<const CLIENTS: usize> {
    clients: Vec<(u128, u16), CLIENTS>,
    total: u16,
    total_limit: u16,
    per_client_limit: u16,
}

/// The counting key: IPv4 (also mapped) as such, IPv6 by its /64.
pub(crate) fn client_key(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => u128::from(v6) & !u128::from(u64::MAX) | 1,
        },
    }
}

impl<const CLIENTS: usize> ConnectionCounter<CLIENTS> {
    /// A counter allowing `total_limit` sessions at once and `per_client_limit` per client.
    pub const fn new(total_limit: u16, per_client_limit: u16) -> Self {
        ConnectionCounter { clients: Vec::new(), total: 0, total_limit, per_client_limit }
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> u16 {
        self.total
    }

    /// Counts a new session from `client`, or says why it must be refused.
    pub fn try_open(&mut self, client: IpAddr) -> Result<(), ConnectionRefusal> {
        if self.total >= self.total_limit {
            return Err(ConnectionRefusal::TooManySessions);
        }
        let key = client_key(client);
        match self.clients.iter_mut().find(|(existing, _)| *existing == key) {
            Some((_, count)) if *count >= self.per_client_limit => {
                return Err(ConnectionRefusal::TooManySessionsFromClient)
            }
            Some((_, count)) => *count += 1,
            None => {
                if self.per_client_limit == 0 {
                    return Err(ConnectionRefusal::TooManySessionsFromClient);
                }
                self.clients.push((key, 1)).map_err(|_| ConnectionRefusal::TooManySessions)?
            }
        }
        self.total += 1;
        Ok(())
    }

    /// Uncounts a session from `client` that [`Self::try_open`] had counted.
    pub fn close(&mut self, client: IpAddr) {
        let key = client_key(client);
        if let Some(index) = self.clients.iter().position(|(existing, _)| *existing == key) {
            self.clients[index].1 -= 1;
            if self.clients[index].1 == 0 {
                self.clients.swap_remove(index);
            }
            self.total = self.total.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_client_and_total() {
        let mut counter: ConnectionCounter<8> = ConnectionCounter::new(3, 2);
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b_same_64: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert_eq!(counter.try_open(a), Ok(()));
        assert_eq!(counter.try_open("::ffff:203.0.113.1".parse().unwrap()), Ok(()));
        assert_eq!(counter.try_open(a), Err(ConnectionRefusal::TooManySessionsFromClient));
        assert_eq!(counter.try_open(b), Ok(()));
        assert_eq!(counter.try_open(b_same_64), Err(ConnectionRefusal::TooManySessions));
        counter.close(a);
        assert_eq!(counter.try_open(b_same_64), Ok(()));
        assert_eq!(counter.try_open(a), Err(ConnectionRefusal::TooManySessions));
        counter.close(b);
        counter.close(b);
        counter.close(b);
        assert_eq!(counter.open_sessions(), 1);
        assert!(ConnectionRefusal::TooManySessions.reply().starts_with(b"421 4.7.0 "));
    }
}
