//! The appliance configuration as it travels on the wire: a list of [`ConfigItem`]s.
//!
//! The configuration is sent item by item (one domain, one recipient, one section per frame),
//! between `ConfigBegin` and `ConfigCommit`, so lists of any length fit small frames and the
//! device replaces its configuration atomically. No item holds a secret: passwords travel only
//! in `SetCredential`, certificates only in `SetTrustAnchor`.

use heapless::String;
use serde::{Deserialize, Serialize};

/// Longest host or domain name on the wire, in bytes.
pub const MAX_HOST_NAME: usize = 128;
/// Longest mail address on the wire, in bytes.
pub const MAX_ADDRESS: usize = 128;
/// Longest user name for a service account, in bytes.
pub const MAX_USER_NAME: usize = 64;

/// A DNS host or domain name.
pub type HostName = String<MAX_HOST_NAME>;
/// A mail address (`local@domain`).
pub type MailAddress = String<MAX_ADDRESS>;
/// A user name at a provider's service (not secret).
pub type UserName = String<MAX_USER_NAME>;

/// One piece of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigItem {
    /// A domain the appliance accepts mail for (postmaster@ and abuse@ exist implicitly).
    Domain(HostName),
    /// A recipient address the appliance accepts mail for; any other is refused with 550.
    Recipient(MailAddress),
    /// A LAN network allowed to submit outbound mail and to see the status page.
    LanPrefix(Ipv4Prefix),
    /// Where accepted inbound mail is delivered on the LAN.
    LanMailbox(LanMailbox),
    /// The provider's smarthost for all outbound mail.
    Smarthost(Smarthost),
    /// The provider's backup MX mailbox, fetched by POP3 over TLS.
    BackupMx(BackupMx),
    /// The DynDNS account kept current over HTTPS.
    DynDns(DynDns),
    /// Outbound and spool limits.
    Limits(Limits),
    /// The LAN status page.
    StatusPage(StatusPage),
    /// An SNTP server for the wall clock (`Received:`/`Date` and certificate validity).
    /// Without one, the appliance asks its default gateway (home routers usually answer).
    TimeServer(HostName),
    /// An HTTPS check-IP service that answers with the public address (verified with the
    /// DynDNS trust anchor). Two on distinct hosts must agree: with `DynDns`, fewer than two
    /// distinct hosts (or one sent twice) break the rules of [`crate::validate`].
    CheckIpSource(CheckIpSource),
}

/// Longest URL path of a check-IP service, in bytes.
pub const MAX_URL_PATH: usize = 64;

/// An HTTPS check-IP service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckIpSource {
    /// Its host name (also the name its certificate must carry).
    pub host: HostName,
    /// The path, e.g. `/` or `/ip`.
    pub path: String<MAX_URL_PATH>,
}

/// An IPv4 network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Prefix {
    /// The network address.
    pub address: [u8; 4],
    /// The prefix length, 0..=32.
    pub length: u8,
}

/// The protocol spoken to the LAN mailbox host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryProtocol {
    /// SMTP.
    Smtp,
    /// LMTP (RFC 2033), as Dovecot offers it.
    Lmtp,
}

/// The LAN mailbox host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanMailbox {
    /// Its LAN address.
    pub address: [u8; 4],
    /// Its port.
    pub port: u16,
    /// SMTP or LMTP.
    pub protocol: DeliveryProtocol,
}

/// How TLS starts on a connection to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsMode {
    /// TLS from the first byte (ports 465, 995).
    Implicit,
    /// STARTTLS, required: a server that does not offer it gets no mail and raises an alarm.
    StartTls,
}

/// The provider's smarthost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Smarthost {
    /// Host name (also the name its certificate must carry).
    pub host: HostName,
    /// Port.
    pub port: u16,
    /// How TLS starts; TLS is always required.
    pub tls: TlsMode,
    /// AUTH user name; the password is a credential.
    pub user_name: UserName,
}

/// The provider's backup MX mailbox (POP3 over TLS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupMx {
    /// Host name.
    pub host: HostName,
    /// Port.
    pub port: u16,
    /// How TLS starts; TLS is always required.
    pub tls: TlsMode,
    /// POP3 user name; the password is a credential.
    pub user_name: UserName,
    /// Seconds between fetches.
    pub poll_interval_seconds: u32,
}

/// The DynDNS account (dyndns2 over HTTPS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynDns {
    /// The update server's host name.
    pub server: HostName,
    /// The host name whose A record points at the line.
    pub host_name: HostName,
    /// Account user name; the password is a credential.
    pub user_name: UserName,
    /// Seconds between checks of the public address and the DNS records.
    pub check_interval_seconds: u32,
}

/// Limits that keep a compromised LAN client from spamming the world and the flash from filling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest message accepted, in bytes (SMTP SIZE).
    pub max_message_bytes: u32,
    /// Most recipients in one message.
    pub max_recipients: u16,
    /// Most outbound messages one LAN client may send per hour.
    pub messages_per_client_per_hour: u16,
    /// Free spool bytes below which new mail is refused with 452.
    pub spool_reserve_bytes: u32,
}

/// The LAN status page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusPage {
    /// Whether the page is served at all.
    pub enabled: bool,
    /// TCP port.
    pub port: u16,
    /// The only `Host:` header value accepted (DNS-rebinding defence).
    pub host_name: HostName,
}
