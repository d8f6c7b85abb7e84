//! The appliance configuration as it travels on the wire: a list of [`ConfigItem`]s.
//!
//! The configuration is sent item by item (one domain, one recipient, one section per frame),
//! between `ConfigBegin` and `ConfigCommit`, so lists of any length fit small frames and the
//! device replaces its configuration atomically. No item holds a secret: the providers'
//! passwords travel only in `SetCredential`, certificates only in `SetTrustAnchor`, and a mail
//! user's password never leaves the owner's host: a [`ConfigItem::User`] carries its salted,
//! slow hash ([`PasswordRecord`], made by the CLI), which the device keeps in its encrypted
//! store and never sends back ([`ConfigItem::redacted`]: `ConfigGet` shows it without salt and
//! hash).

use heapless::String;
use serde::{Deserialize, Serialize};

pub use homemx_credentials::PasswordRecord;

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
    /// A mail user who may submit on 587/465 after SMTP `AUTH` (at most
    /// [`crate::validate::MAX_USERS`], each name once).
    User(MailUser),
    /// Who may submit mail for other domains. Without this item the defaults apply:
    /// [`Submission::DEFAULT`].
    Submission(Submission),
    /// The ACME account that obtains and renews the TLS identity's certificate (`[tls.acme]`).
    /// The CA anchor of the ACME server's HTTPS travels in `SetTrustAnchor` (`TlsService::Acme`),
    /// the External Account Binding MAC key in `SetCredential` (`Credential::AcmeEabKey`).
    Acme(Acme),
}

impl ConfigItem {
    /// The item as the device shows it when the configuration is read back: a user's password
    /// record without salt and hash (the guessable part never leaves the device), every other
    /// item as it is.
    pub fn redacted(&self) -> ConfigItem {
        match self {
            ConfigItem::User(user) => ConfigItem::User(MailUser { password: user.password.redacted(), ..user.clone() }),
            other => other.clone(),
        }
    }
}

/// A mail user: the login name of SMTP `AUTH` and its password record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailUser {
    /// The login name: the user's mail address, `local@domain`, lower-case, its domain one of
    /// the configured domains (see [`crate::validate::user_name`]).
    pub name: MailAddress,
    /// The salted, slow hash of the password (never the password).
    pub password: PasswordRecord,
    /// Most messages this user may submit per hour; `None`: the `[limits]` per-client figure.
    pub messages_per_hour: Option<u16>,
}

/// Who may submit mail for other domains (relay through the smarthost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// The submission ports (587 STARTTLS, 465 implicit TLS) take `MAIL FROM` only after a
    /// successful `AUTH` (RFC 6409 §4.3). Default true.
    pub requires_auth: bool,
    /// A client from a LAN network may relay without `AUTH`, by its address alone (the older
    /// behaviour). Default false. Weaker: any device on the LAN, a compromised one included,
    /// then sends as anyone, and the per-user quotas do not apply to it (only the per-address one).
    pub lan_relay_without_auth: bool,
}

impl Submission {
    /// `AUTH` required, no relaying by LAN address alone.
    pub const DEFAULT: Submission = Submission { requires_auth: true, lan_relay_without_auth: false };
}

impl Default for Submission {
    fn default() -> Self {
        Self::DEFAULT
    }
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

/// The oldest TLS version a provider connection accepts (`min_tls = "1.2" | "1.3"`). TLS 1.3
/// is preferred either way; TLS 1.2 is only ever ECDHE with an AEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MinTls {
    /// TLS 1.2 or 1.3 (the default: providers on older stacks still work).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
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
    /// The oldest TLS version accepted.
    pub min_tls: MinTls,
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
    /// The oldest TLS version accepted.
    pub min_tls: MinTls,
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
    /// The oldest TLS version accepted (by the update server and the check-IP services).
    pub min_tls: MinTls,
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

/// Longest ACME directory URL on the wire, in bytes.
pub const MAX_DIRECTORY_URL: usize = 160;
/// Longest External Account Binding key id on the wire, in bytes.
pub const MAX_EAB_KEY_ID: usize = 64;

/// The ACME challenge the device answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcmeChallenge {
    /// HTTP-01: the key authorization on port 80 of the WAN side.
    Http01,
    /// TLS-ALPN-01: a validation certificate on port 443 (ALPN `acme-tls/1`).
    TlsAlpn01,
}

/// The ACME (RFC 8555) account that obtains the certificate of the device's TLS identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acme {
    /// The directory URL, `https://host[:port]/path` (see [`crate::validate::acme_directory`]).
    pub directory: String<MAX_DIRECTORY_URL>,
    /// The name the certificate is for: the MX host name of the TLS identity.
    pub name: HostName,
    /// The owner's contact address for the CA (`mailto:`), if any.
    pub contact: Option<MailAddress>,
    /// The owner agreed to the CA's terms of service.
    pub agree_terms: bool,
    /// The External Account Binding key id, when the CA wants one (the MAC key is a credential).
    pub eab_key_id: Option<String<MAX_EAB_KEY_ID>>,
    /// The challenge answered.
    pub challenge: AcmeChallenge,
    /// The certificate keeps the TLS identity's key across renewals (a published TLSA record
    /// stays valid). Default true.
    pub reuse_key: bool,
}
