//! Relay policy: accepted domains, known recipients, LAN prefixes, and the refusal of every
//! trick that hides a foreign destination inside a local address.
//!
//! Decisions (BSI M 5.56: accept only mail for the own domains or from the own networks):
//! - `<postmaster>`, and `postmaster@` and `abuse@` every accepted domain, always exist.
//! - A recipient in an accepted domain must be a known recipient, else `550 5.1.1`.
//! - A recipient in any other domain is relayed only when [`RelayConfig::set_lan_may_relay`]
//!   says there is an outbound route (the smarthost), and then only for a client that
//!   authenticated (AUTH on a submission listener), or for a LAN client by its address alone
//!   when the owner opted in with [`RelayConfig::set_lan_relay_without_auth`]. Without the
//!   route, a client that could otherwise relay (authenticated, or from the LAN) gets
//!   `550 5.7.1 outbound mail is not configured`; a LAN client without AUTH and without the
//!   opt-in gets `530 5.7.0 Authentication required`; anyone else `550 5.7.1` relay denied.
//! - Relaying by LAN address alone is the weaker mode: any device on the LAN (a compromised
//!   PC, a smart TV, a guest's phone) may then send as anyone through the smarthost, and the
//!   hourly quota can only be counted per address. With AUTH, every message has a user, and
//!   a stolen password is one user's quota and can be revoked.
//! - Refused as tricks, whatever the client: source routes (`<@a,@b:user@c>`; RFC 5321 says
//!   to ignore them, this server refuses them so that nothing that looks routed is accepted),
//!   address literals (`user@[192.0.2.1]`: the MX serves names only, its public address
//!   changes), and in a local domain a local part with `%` (percent hack), `!` (bang path),
//!   `@` (quoted `"user@foreign"@ours`), or quoted content that is not a plain dot-string.
//! - Syntax tricks never reach this module: a double `@`, a trailing dot, a bare local part
//!   other than `postmaster` are refused by the parser with `501 5.1.3`.
//! - Domains compare without regard to ASCII case, local parts too (documented choice: the
//!   mailbox host is expected to be case-insensitive, as Dovecot and Postfix are by default).

use core::net::IpAddr;
use core::str::FromStr;

use heapless::{String, Vec};

use crate::address::{parse_domain, Domain, ForwardPath, LocalPart, ReversePath, LOCAL_PART_LENGTH_MAX};
use crate::policy::{ClientInfo, RecipientDecision, RelayTrick, SenderDecision, SessionPolicy};

/// Most accepted domains.
pub const ACCEPTED_DOMAINS_MAX: usize = 8;
/// Most known recipients over all domains.
pub const KNOWN_RECIPIENTS_MAX: usize = 64;
/// Most LAN prefixes.
pub const LAN_PREFIXES_MAX: usize = 8;
/// Longest accepted domain name stored.
pub const DOMAIN_NAME_MAX: usize = 253;

/// Local parts that exist in every accepted domain (RFC 5321 4.5.1, RFC 2142).
pub const ALWAYS_KNOWN_LOCAL_PARTS: [&str; 2] = ["postmaster", "abuse"];

/// A configuration mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The fixed capacity is used up.
    Full,
    /// Not a valid domain name.
    InvalidDomain,
    /// Not `local-part@accepted-domain` with a plain dot-string local part.
    InvalidRecipient,
    /// Not `address/length` with a length that fits the address family.
    InvalidPrefix,
}

/// An IPv4 or IPv6 network in CIDR form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPrefix {
    network: IpAddr,
    length: u8,
}

impl IpPrefix {
    /// The network of `address` with `length` leading bits (host bits are cleared).
    pub fn new(address: IpAddr, length: u8) -> Result<IpPrefix, ConfigError> {
        let network = match address {
            IpAddr::V4(v4) if length <= 32 => IpAddr::V4((u32::from(v4) & mask32(length)).into()),
            IpAddr::V6(v6) if length <= 128 => IpAddr::V6((u128::from(v6) & mask128(length)).into()),
            _ => return Err(ConfigError::InvalidPrefix),
        };
        Ok(IpPrefix { network, length })
    }

    /// Parses `192.168.1.0/24` or `fd00::/8`.
    pub fn parse(text: &str) -> Result<IpPrefix, ConfigError> {
        let (address, length) = text.split_once('/').ok_or(ConfigError::InvalidPrefix)?;
        let address = IpAddr::from_str(address).map_err(|_| ConfigError::InvalidPrefix)?;
        if length.is_empty() || length.len() > 3 || !length.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::InvalidPrefix);
        }
        let length = u8::from_str(length).map_err(|_| ConfigError::InvalidPrefix)?;
        IpPrefix::new(address, length)
    }

    /// Whether `address` is inside this network. An IPv4-mapped IPv6 address
    /// (`::ffff:192.0.2.1`) counts as the IPv4 address it maps.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
            v4 => v4,
        };
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                u32::from(address) & mask32(self.length) == u32::from(network)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                u128::from(address) & mask128(self.length) == u128::from(network)
            }
            _ => false,
        }
    }
}

fn mask32(length: u8) -> u32 {
    if length == 0 { 0 } else { u32::MAX << (32 - u32::from(length)) }
}

fn mask128(length: u8) -> u128 {
    if length == 0 { 0 } else { u128::MAX << (128 - u32::from(length)) }
}

/// A recipient known in one accepted domain.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KnownRecipient {
    domain_index: u8,
    local_part: String<LOCAL_PART_LENGTH_MAX>,
}

/// The relay configuration, in fixed-capacity storage (no allocator).
#[derive(Clone, Debug, Default)]
pub struct RelayConfig {
    domains: Vec<String<DOMAIN_NAME_MAX>, ACCEPTED_DOMAINS_MAX>,
    recipients: Vec<KnownRecipient, KNOWN_RECIPIENTS_MAX>,
    lan_prefixes: Vec<IpPrefix, LAN_PREFIXES_MAX>,
    lan_may_relay: bool,
    lan_relay_without_auth: bool,
}

impl RelayConfig {
    /// An empty configuration: no domain accepted, nothing relayed.
    pub const fn new() -> RelayConfig {
        RelayConfig {
            domains: Vec::new(),
            recipients: Vec::new(),
            lan_prefixes: Vec::new(),
            lan_may_relay: false,
            lan_relay_without_auth: false,
        }
    }

    /// Empties it in place (no domain, recipient or prefix; nothing relayed), without a
    /// temporary copy of the tables.
    pub fn clear(&mut self) {
        self.domains.clear();
        self.recipients.clear();
        self.lan_prefixes.clear();
        self.lan_may_relay = false;
        self.lan_relay_without_auth = false;
    }

    /// Accepts mail for `domain` (stored in lower case; a trailing dot is not allowed).
    pub fn add_domain(&mut self, domain: &str) -> Result<(), ConfigError> {
        if parse_domain(domain.as_bytes()) != Ok(domain.len()) || domain.len() > DOMAIN_NAME_MAX {
            return Err(ConfigError::InvalidDomain);
        }
        if self.domain_index(domain).is_some() {
            return Ok(());
        }
        let mut stored = String::new();
        for character in domain.chars() {
            stored.push(character.to_ascii_lowercase()).map_err(|_| ConfigError::InvalidDomain)?;
        }
        self.domains.push(stored).map_err(|_| ConfigError::Full)
    }

    /// Makes `local@domain` a known recipient; the domain must have been added.
    pub fn add_recipient(&mut self, address: &str) -> Result<(), ConfigError> {
        let mailbox = crate::address::parse_mailbox(address).map_err(|_| ConfigError::InvalidRecipient)?;
        let Domain::Name(domain) = mailbox.domain() else {
            return Err(ConfigError::InvalidRecipient);
        };
        let domain_index = self.domain_index(domain).ok_or(ConfigError::InvalidRecipient)?;
        let local = mailbox.local_part();
        if local.is_quoted() || local.contains(b'%') || local.contains(b'!') {
            return Err(ConfigError::InvalidRecipient);
        }
        if self.recipient_known(domain_index, &local) {
            return Ok(());
        }
        let mut local_part = String::new();
        local_part.push_str(local.raw()).map_err(|_| ConfigError::InvalidRecipient)?;
        self.recipients
            .push(KnownRecipient { domain_index: domain_index as u8, local_part })
            .map_err(|_| ConfigError::Full)
    }

    /// Adds a LAN network.
    pub fn add_lan_prefix(&mut self, prefix: IpPrefix) -> Result<(), ConfigError> {
        self.lan_prefixes.push(prefix).map_err(|_| ConfigError::Full)
    }

    /// Whether outbound mail has a route (a smarthost is configured), so that authenticated
    /// clients (and LAN clients, with [`Self::set_lan_relay_without_auth`]) may send to foreign
    /// domains. Default: no, and then their foreign recipients get
    /// [`RecipientDecision::OutboundNotConfigured`] (an inbound-only MX).
    pub fn set_lan_may_relay(&mut self, allowed: bool) {
        self.lan_may_relay = allowed;
    }

    /// The owner's explicit opt-in to the weaker mode (see the module doc): LAN clients may
    /// relay by their address alone, without AUTH. Default: no; a LAN client must
    /// authenticate to relay (`530 5.7.0 Authentication required` otherwise).
    pub fn set_lan_relay_without_auth(&mut self, allowed: bool) {
        self.lan_relay_without_auth = allowed;
    }

    /// Whether LAN addresses may relay without AUTH (see [`Self::set_lan_relay_without_auth`]).
    pub fn lan_relay_without_auth(&self) -> bool {
        self.lan_relay_without_auth
    }

    /// The accepted domains, in lower case.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.iter().map(|domain| domain.as_str())
    }

    /// Whether `address` is inside one of the LAN prefixes.
    pub fn is_lan_client(&self, address: IpAddr) -> bool {
        self.lan_prefixes.iter().any(|prefix| prefix.contains(address))
    }

    /// Whether `domain` is accepted (exact match, any case).
    pub fn is_accepted_domain(&self, domain: &str) -> bool {
        self.domain_index(domain).is_some()
    }

    fn domain_index(&self, domain: &str) -> Option<usize> {
        self.domains.iter().position(|accepted| accepted.eq_ignore_ascii_case(domain))
    }

    fn recipient_known(&self, domain_index: usize, local: &LocalPart<'_>) -> bool {
        ALWAYS_KNOWN_LOCAL_PARTS.iter().any(|always| local.eq_ignore_ascii_case(always))
            || self.recipients.iter().any(|known| {
                usize::from(known.domain_index) == domain_index && local.eq_ignore_ascii_case(&known.local_part)
            })
    }

    /// The relay decision for `recipient` sent by a client at `client` that has not
    /// authenticated.
    pub fn check_recipient(&self, client: IpAddr, recipient: &ForwardPath<'_>) -> RecipientDecision {
        self.decide(client, false, recipient)
    }

    /// The relay decision for `recipient` sent by `client` (authenticated or not).
    pub fn check_recipient_from(&self, client: &ClientInfo<'_>, recipient: &ForwardPath<'_>) -> RecipientDecision {
        self.decide(client.address, client.authenticated_user.is_some(), recipient)
    }

    fn decide(&self, client: IpAddr, authenticated: bool, recipient: &ForwardPath<'_>) -> RecipientDecision {
        let path = match recipient {
            ForwardPath::Postmaster => return RecipientDecision::Accept,
            ForwardPath::Path(path) => path,
        };
        if path.source_route.is_some() {
            return RecipientDecision::RelayTrick(RelayTrick::SourceRoute);
        }
        let domain = match path.mailbox.domain() {
            Domain::Name(name) => name,
            Domain::AddressLiteral(_) => return RecipientDecision::RelayTrick(RelayTrick::AddressLiteral),
        };
        let Some(domain_index) = self.domain_index(domain) else {
            let lan = self.is_lan_client(client);
            return match (authenticated || lan, self.lan_may_relay) {
                (false, _) => RecipientDecision::RelayDenied,
                (true, false) => RecipientDecision::OutboundNotConfigured,
                (true, true) if authenticated || self.lan_relay_without_auth => RecipientDecision::Accept,
                (true, true) => RecipientDecision::AuthenticationRequired,
            };
        };
        let local = path.mailbox.local_part();
        if local.contains(b'@') {
            return RecipientDecision::RelayTrick(RelayTrick::QuotedAt);
        }
        if local.contains(b'%') {
            return RecipientDecision::RelayTrick(RelayTrick::PercentHack);
        }
        if local.contains(b'!') {
            return RecipientDecision::RelayTrick(RelayTrick::BangPath);
        }
        if local.is_quoted() && !local.content_is_dot_string() {
            return RecipientDecision::RelayTrick(RelayTrick::QuotedLocalPart);
        }
        if self.recipient_known(domain_index, &local) {
            RecipientDecision::Accept
        } else {
            RecipientDecision::UnknownRecipient
        }
    }
}

/// A ready [`SessionPolicy`] for the MX: the relay configuration, the lock state and the
/// spool's free space, as the application knows them when the session asks.
#[derive(Clone, Copy, Debug)]
pub struct StandardPolicy<'a> {
    /// Domains, recipients, LAN prefixes.
    pub relay: &'a RelayConfig,
    /// Whether the device is locked (no key to write the spool): everything is 4xx.
    pub locked: bool,
    /// Free octets in the spool now.
    pub spool_free_bytes: u64,
    /// Octets that must stay free beyond the declared size (for envelopes, the `Received:`
    /// header, messages without `SIZE=`).
    pub spool_reserve_bytes: u64,
}

impl SessionPolicy for StandardPolicy<'_> {
    fn service_available(&mut self, _client: &ClientInfo<'_>) -> bool {
        !self.locked
    }

    fn check_sender(
        &mut self,
        _client: &ClientInfo<'_>,
        _sender: &ReversePath<'_>,
        declared_size: Option<u64>,
    ) -> SenderDecision {
        if self.locked {
            return SenderDecision::ServiceUnavailable;
        }
        let needed = declared_size.unwrap_or(0).saturating_add(self.spool_reserve_bytes);
        if self.spool_free_bytes < needed {
            return SenderDecision::InsufficientStorage;
        }
        SenderDecision::Accept
    }

    fn check_recipient(&mut self, client: &ClientInfo<'_>, recipient: &ForwardPath<'_>) -> RecipientDecision {
        if self.locked {
            return RecipientDecision::ServiceUnavailable;
        }
        if self.spool_free_bytes < self.spool_reserve_bytes {
            return RecipientDecision::InsufficientStorage;
        }
        self.relay.check_recipient_from(client, recipient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::parse_forward_path;

    fn config() -> RelayConfig {
        let mut config = RelayConfig::new();
        config.add_domain("Example.ORG").unwrap();
        config.add_domain("example.net").unwrap();
        config.add_recipient("alice@example.org").unwrap();
        config.add_recipient("bob.smith@example.net").unwrap();
        config.add_lan_prefix(IpPrefix::parse("192.168.1.0/24").unwrap()).unwrap();
        config.add_lan_prefix(IpPrefix::parse("fd00::/8").unwrap()).unwrap();
        config
    }

    fn decide(config: &RelayConfig, client: &str, path: &str) -> RecipientDecision {
        let (path, _) = parse_forward_path(path.as_bytes()).unwrap();
        config.check_recipient(IpAddr::from_str(client).unwrap(), &path)
    }

    #[test]
    fn prefixes() {
        let prefix = IpPrefix::parse("192.168.1.77/24").unwrap();
        assert!(prefix.contains("192.168.1.3".parse().unwrap()));
        assert!(prefix.contains("::ffff:192.168.1.3".parse().unwrap()));
        assert!(!prefix.contains("192.168.2.3".parse().unwrap()));
        assert!(!prefix.contains("fd00::1".parse().unwrap()));
        let v6 = IpPrefix::parse("2001:db8:1::/48").unwrap();
        assert!(v6.contains("2001:db8:1:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db8:2::1".parse().unwrap()));
        assert!(IpPrefix::parse("0.0.0.0/0").unwrap().contains("203.0.113.9".parse().unwrap()));
        assert_eq!(IpPrefix::parse("10.0.0.0/33"), Err(ConfigError::InvalidPrefix));
        assert_eq!(IpPrefix::parse("10.0.0.0"), Err(ConfigError::InvalidPrefix));
        assert_eq!(IpPrefix::parse("10.0.0.0/+8"), Err(ConfigError::InvalidPrefix));
    }

    #[test]
    fn known_and_always_known_recipients() {
        let config = config();
        let wan = "203.0.113.5";
        assert_eq!(decide(&config, wan, "<alice@example.org>"), RecipientDecision::Accept);
        assert_eq!(decide(&config, wan, "<ALICE@EXAMPLE.org>"), RecipientDecision::Accept);
        assert_eq!(decide(&config, wan, "<\"alice\"@example.org>"), RecipientDecision::Accept);
        assert_eq!(decide(&config, wan, "<alice@example.net>"), RecipientDecision::UnknownRecipient);
        assert_eq!(decide(&config, wan, "<bob.smith@example.net>"), RecipientDecision::Accept);
        for domain in ["example.org", "example.net"] {
            for local in ["postmaster", "Abuse"] {
                let path = std::format!("<{local}@{domain}>");
                assert_eq!(decide(&config, wan, &path), RecipientDecision::Accept, "{path}");
            }
        }
        assert_eq!(decide(&config, wan, "<postmaster>"), RecipientDecision::Accept);
        assert_eq!(decide(&config, wan, "<mallory@example.org>"), RecipientDecision::UnknownRecipient);
    }

    #[test]
    fn relay_only_from_lan_when_allowed() {
        let mut config = config();
        assert_eq!(decide(&config, "203.0.113.5", "<x@foreign.example>"), RecipientDecision::RelayDenied);
        assert_eq!(decide(&config, "192.168.1.20", "<x@foreign.example>"), RecipientDecision::OutboundNotConfigured);
        assert_eq!(decide(&config, "192.168.1.20", "<alice@example.org>"), RecipientDecision::Accept, "inbound still works");
        config.set_lan_may_relay(true);
        // With a route but without the opt-in, a LAN address alone is not enough.
        assert_eq!(decide(&config, "192.168.1.20", "<x@foreign.example>"), RecipientDecision::AuthenticationRequired);
        config.set_lan_relay_without_auth(true);
        assert_eq!(decide(&config, "192.168.1.20", "<x@foreign.example>"), RecipientDecision::Accept);
        assert_eq!(decide(&config, "fd12::20", "<x@foreign.example>"), RecipientDecision::Accept);
        assert_eq!(decide(&config, "203.0.113.5", "<x@foreign.example>"), RecipientDecision::RelayDenied);
        assert_eq!(
            decide(&config, "192.168.1.20", "<x@[203.0.113.9]>"),
            RecipientDecision::RelayTrick(RelayTrick::AddressLiteral)
        );
    }

    #[test]
    fn authenticated_clients_relay_from_anywhere_when_there_is_a_route() {
        let mut config = config();
        let (path, _) = parse_forward_path(b"<x@foreign.example>").unwrap();
        let user = |address: &str| ClientInfo { address: address.parse().unwrap(), tls_active: true, authenticated_user: Some("alice") };
        let anonymous = |address: &str| ClientInfo { address: address.parse().unwrap(), tls_active: true, authenticated_user: None };
        assert_eq!(config.check_recipient_from(&user("203.0.113.5"), &path), RecipientDecision::OutboundNotConfigured);
        config.set_lan_may_relay(true);
        assert_eq!(config.check_recipient_from(&user("203.0.113.5"), &path), RecipientDecision::Accept);
        assert_eq!(config.check_recipient_from(&user("192.168.1.20"), &path), RecipientDecision::Accept);
        assert_eq!(config.check_recipient_from(&anonymous("203.0.113.5"), &path), RecipientDecision::RelayDenied);
        assert_eq!(config.check_recipient_from(&anonymous("192.168.1.20"), &path), RecipientDecision::AuthenticationRequired);
        // Tricks stay tricks for authenticated users.
        let (literal, _) = parse_forward_path(b"<x@[203.0.113.9]>").unwrap();
        assert_eq!(config.check_recipient_from(&user("192.168.1.20"), &literal), RecipientDecision::RelayTrick(RelayTrick::AddressLiteral));
        config.clear();
        assert_eq!(config.check_recipient_from(&anonymous("192.168.1.20"), &path), RecipientDecision::RelayDenied, "clear forgets the opt-in");
    }

    #[test]
    fn configuration_is_checked() {
        let mut config = RelayConfig::new();
        assert_eq!(config.add_domain("example.org."), Err(ConfigError::InvalidDomain));
        assert_eq!(config.add_recipient("a@example.org"), Err(ConfigError::InvalidRecipient));
        config.add_domain("example.org").unwrap();
        assert_eq!(config.add_recipient("a%b@example.org"), Err(ConfigError::InvalidRecipient));
        assert_eq!(config.add_recipient("\"a b\"@example.org"), Err(ConfigError::InvalidRecipient));
        for index in 0..KNOWN_RECIPIENTS_MAX {
            config.add_recipient(&std::format!("user{index}@example.org")).unwrap();
        }
        assert_eq!(config.add_recipient("one.more@example.org"), Err(ConfigError::Full));
        assert_eq!(config.domains().collect::<std::vec::Vec<_>>(), ["example.org"]);
    }
}
