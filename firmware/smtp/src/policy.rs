//! The questions a server session asks its caller before it accepts a sender or a recipient.

use core::net::IpAddr;

use crate::address::{ForwardPath, ReversePath};

/// What the policy knows about the client of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientInfo<'a> {
    /// The client's IP address as seen by the transport.
    pub address: IpAddr,
    /// Whether the session runs inside TLS now.
    pub tls_active: bool,
    /// The user the client authenticated as (AUTH accepted by the caller), if any.
    pub authenticated_user: Option<&'a str>,
}

/// The answer to `MAIL FROM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderDecision {
    /// Go on: `250 2.1.0`.
    Accept,
    /// The spool cannot take the declared size now: `452 4.3.1`.
    InsufficientStorage,
    /// The device is locked (or otherwise cannot spool): `421 4.3.2` and close, so the sending
    /// MTA tries the backup MX.
    ServiceUnavailable,
    /// This client may not send: `550 5.7.1`.
    Refused,
    /// This LAN client (or this authenticated user) has sent its hourly quota of messages:
    /// `450 4.7.1` (a compromised PC or a stolen password must not turn the line into a spam
    /// cannon; an honest client retries later).
    QuotaExceeded,
}

/// The answer to `RCPT TO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipientDecision {
    /// Go on: `250 2.1.5`.
    Accept,
    /// A local domain but no such mailbox: `550 5.1.1`.
    UnknownRecipient,
    /// A foreign domain and a client that may not relay: `550 5.7.1`.
    RelayDenied,
    /// A foreign domain from a LAN client while no outbound route (smarthost) is configured:
    /// `550 5.7.1 outbound mail is not configured` (an inbound-only MX).
    OutboundNotConfigured,
    /// A foreign domain from a LAN client that did not authenticate, where relaying by LAN
    /// address alone is not enabled: `530 5.7.0 Authentication required`.
    AuthenticationRequired,
    /// A foreign destination hidden in the address: `550 5.7.1`.
    RelayTrick(RelayTrick),
    /// The spool is too full: `452 4.3.1`.
    InsufficientStorage,
    /// The device is locked: `450 4.3.2` (the sender retries or uses the backup MX).
    ServiceUnavailable,
}

/// The caller's policy, consulted by the server session at connect, MAIL and RCPT time.
pub trait SessionPolicy {
    /// Whether the service is up for this client (false while the device is locked: the
    /// greeting becomes `421 4.3.2` and the connection closes).
    fn service_available(&mut self, client: &ClientInfo<'_>) -> bool;

    /// Whether a transaction from `sender` with the declared size (`SIZE=`, if any) may
    /// start. The session has already refused a declared size above its own limit.
    fn check_sender(
        &mut self,
        client: &ClientInfo<'_>,
        sender: &ReversePath<'_>,
        declared_size: Option<u64>,
    ) -> SenderDecision;

    /// Whether `recipient` is accepted (domain accepted and recipient known, or relaying
    /// allowed for this client).
    fn check_recipient(&mut self, client: &ClientInfo<'_>, recipient: &ForwardPath<'_>) -> RecipientDecision;

    /// Asked at `STARTTLS` (offered because the connection said so): whether a TLS session can
    /// be set up now. `true` commits the caller to the handshake (it reserves its TLS arena
    /// slot here); `false`, e.g. with the arena exhausted, is answered `454 4.7.0 TLS not
    /// available due to temporary reason` and the session goes on in clear. Default: yes.
    fn start_tls_available(&mut self, _client: &ClientInfo<'_>) -> bool {
        true
    }

    /// Asked at `AUTH`: whether this client may try to authenticate now (see
    /// [`AuthThrottle::admit`](crate::auth_throttle::AuthThrottle::admit)); `false` is
    /// answered `421 4.7.0` and the connection closes. Default: yes.
    fn may_authenticate(&mut self, _client: &ClientInfo<'_>) -> bool {
        true
    }
}

/// A way of hiding a foreign destination in an address; always refused with `550 5.7.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayTrick {
    /// `user%foreign@ours`.
    PercentHack,
    /// `foreign!user@ours`.
    BangPath,
    /// `<@ours:user@foreign>` or any other source route.
    SourceRoute,
    /// `"user@foreign"@ours`.
    QuotedAt,
    /// A quoted local part that is not a plain dot-string (`"a b"@ours`, `"x\"y"@ours`).
    QuotedLocalPart,
    /// `user@[192.0.2.1]`.
    AddressLiteral,
}
