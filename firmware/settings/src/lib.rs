//! How the MX applies its configuration: [`MailSettings`] (what the MX needs from the
//! configuration) and the rules that turn each [`ConfigItem`] into it ([`Details::apply`],
//! [`Details::finish`]): defaults when the owner sets no limits, limits clamped to what the MX
//! can do, the host name (`mx.<first domain>`, or the DynDNS host name), the postmaster domain,
//! the relay tables, LAN relaying only with a smarthost, and the ACME account only for the host name.
//!
//! The relay tables are large (7 KB): the caller keeps the one copy of [`MailSettings`] and
//! lets [`Details::apply`] fill its tables in place; everything else is collected in the small
//! [`Details`] and moved in by [`Details::finish`]. No allocation, no clock, no I/O.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

use core::net::{IpAddr, Ipv4Addr};

use homemx_smtp::relay::{IpPrefix, RelayConfig};
use homemx_wire::config::{AcmeChallenge, BackupMx, CheckIpSource, ConfigItem, DynDns, HostName, LanMailbox, Smarthost, Submission, MAX_HOST_NAME};
use homemx_wire::validate::{MAX_CHECK_IP_SOURCES, MAX_TIME_SERVERS};

// The wire's rules (`homemx_wire::validate`), which the console applies to every configuration,
// refuse more domains, recipients and LAN networks than the relay tables keep.
const _: () = assert!(
    homemx_wire::validate::MAX_DOMAINS == homemx_smtp::relay::ACCEPTED_DOMAINS_MAX
        && homemx_wire::validate::MAX_KNOWN_RECIPIENTS == homemx_smtp::relay::KNOWN_RECIPIENTS_MAX
        && homemx_wire::validate::MAX_LAN_PREFIXES == homemx_smtp::relay::LAN_PREFIXES_MAX
);

/// Largest message the MX takes (also what a message without `SIZE=` reserves in the spool).
pub const DEFAULT_MESSAGE_SIZE: u64 = 4 * 1024 * 1024;
/// Free spool bytes kept back beyond a message's size (envelopes, headers, delete records).
pub const DEFAULT_SPOOL_RESERVE: u64 = 256 * 1024;
/// Default for [`MailSettings::messages_per_client_per_hour`] when the owner sets none.
pub const DEFAULT_MESSAGES_PER_CLIENT_PER_HOUR: u16 = 100;
/// The host name when neither a domain nor a DynDNS account names one.
pub const DEFAULT_HOST_NAME: &str = "homemx";

/// The MX's own name: `mx.` and the longest domain the wire carries, or a DynDNS host name.
pub type OwnHostName = heapless::String<{ MX_PREFIX.len() + MAX_HOST_NAME }>;
/// What a configured domain becomes the MX's host name with.
const MX_PREFIX: &str = "mx.";

/// What the MX needs from the configuration.
pub struct MailSettings {
    /// Domains, recipients and LAN prefixes.
    pub relay: RelayConfig,
    /// Where accepted mail goes.
    pub mailbox: Option<LanMailbox>,
    /// The name in the greeting and the `Received:` header.
    pub host_name: OwnHostName,
    /// The domain whose postmaster `RCPT TO:<postmaster>` means (the first configured one).
    pub postmaster_domain: HostName,
    /// Largest message accepted.
    pub message_size: u64,
    /// Free spool bytes kept back.
    pub spool_reserve_bytes: u64,
    /// The provider's smarthost; without one (an inbound-only MX), LAN clients may not send to
    /// other domains.
    pub smarthost: Option<Smarthost>,
    /// Most recipients per message.
    pub max_recipients: usize,
    /// Most messages one LAN client may submit per hour.
    pub messages_per_client_per_hour: u16,
    /// SNTP servers (empty: ask the default gateway).
    pub time_servers: heapless::Vec<HostName, MAX_TIME_SERVERS>,
    /// The provider's backup MX mailbox, fetched by POP3.
    pub backup_mx: Option<BackupMx>,
    /// The DynDNS account.
    pub dyndns: Option<DynDns>,
    /// The check-IP services.
    pub check_ip: heapless::Vec<CheckIpSource, MAX_CHECK_IP_SOURCES>,
    /// The submission ports (587, 465) take `MAIL FROM` only after `AUTH`, unless the client
    /// is in a LAN network and the owner opted in to relaying by LAN address alone.
    pub submission_requires_auth: bool,
    /// The challenge of the configured ACME account (`None`: no `[tls.acme]`, or its name is
    /// not the host name). Only this is kept: the courier reads the account from the store
    /// when it runs (the item is 500 bytes, not worth a static copy).
    pub acme: Option<AcmeChallenge>,
}

impl MailSettings {
    /// No configuration: nothing accepted, nothing relayed, the default limits.
    pub const EMPTY: MailSettings = MailSettings {
        relay: RelayConfig::new(),
        mailbox: None,
        host_name: heapless::String::new(),
        postmaster_domain: heapless::String::new(),
        message_size: DEFAULT_MESSAGE_SIZE,
        spool_reserve_bytes: DEFAULT_SPOOL_RESERVE,
        smarthost: None,
        max_recipients: homemx_spool::MAX_RECIPIENTS,
        messages_per_client_per_hour: DEFAULT_MESSAGES_PER_CLIENT_PER_HOUR,
        time_servers: heapless::Vec::new(),
        backup_mx: None,
        dyndns: None,
        check_ip: heapless::Vec::new(),
        submission_requires_auth: true,
        acme: None,
    };

    /// Empties in place what names the owner's domains, recipients and providers (not kept
    /// while locked), without a temporary copy of the relay tables.
    pub fn forget(&mut self) {
        self.relay.clear();
        self.mailbox = None;
        self.host_name.clear();
        self.postmaster_domain.clear();
        self.smarthost = None;
        self.time_servers.clear();
        self.backup_mx = None;
        self.dyndns = None;
        self.check_ip.clear();
        self.acme = None;
    }
}

/// Everything of [`MailSettings`] but the relay tables, while the configuration is read item by
/// item ([`Details::apply`]); [`Details::finish`] moves it into the settings.
pub struct Details {
    mailbox: Option<LanMailbox>,
    host_name: OwnHostName,
    postmaster_domain: HostName,
    message_size: u64,
    spool_reserve_bytes: u64,
    smarthost: Option<Smarthost>,
    max_recipients: usize,
    messages_per_client_per_hour: u16,
    time_servers: heapless::Vec<HostName, MAX_TIME_SERVERS>,
    backup_mx: Option<BackupMx>,
    dyndns: Option<DynDns>,
    check_ip: heapless::Vec<CheckIpSource, MAX_CHECK_IP_SOURCES>,
    submission: Submission,
    acme: Option<(AcmeChallenge, HostName)>,
}

impl Default for Details {
    fn default() -> Details {
        Details::new()
    }
}

impl Details {
    /// Nothing read yet: the default limits.
    pub const fn new() -> Details {
        Details {
            mailbox: None,
            host_name: heapless::String::new(),
            postmaster_domain: heapless::String::new(),
            message_size: DEFAULT_MESSAGE_SIZE,
            spool_reserve_bytes: DEFAULT_SPOOL_RESERVE,
            smarthost: None,
            max_recipients: homemx_spool::MAX_RECIPIENTS,
            messages_per_client_per_hour: DEFAULT_MESSAGES_PER_CLIENT_PER_HOUR,
            time_servers: heapless::Vec::new(),
            backup_mx: None,
            dyndns: None,
            check_ip: heapless::Vec::new(),
            submission: Submission::DEFAULT,
            acme: None,
        }
    }

    /// Applies one configuration item; domains, recipients and LAN prefixes go into `relay` (the
    /// tables being built in place). False when the relay tables refuse it or a list is full.
    pub fn apply(&mut self, relay: &mut RelayConfig, item: &ConfigItem) -> bool {
        match item {
            ConfigItem::Domain(domain) => {
                if self.postmaster_domain.is_empty() {
                    let _ = self.postmaster_domain.push_str(domain.as_str());
                }
                // A DynDNS host name, read before or after, is the host name.
                if self.host_name.is_empty() {
                    let _ = self.host_name.push_str(MX_PREFIX);
                    let _ = self.host_name.push_str(domain.as_str());
                }
                relay.add_domain(domain.as_str()).is_ok()
            }
            ConfigItem::Recipient(address) => relay.add_recipient(address.as_str()).is_ok(),
            ConfigItem::LanPrefix(prefix) => {
                let address = IpAddr::V4(Ipv4Addr::from(prefix.address));
                IpPrefix::new(address, prefix.length).and_then(|prefix| relay.add_lan_prefix(prefix)).is_ok()
            }
            ConfigItem::LanMailbox(host) => {
                self.mailbox = Some(host.clone());
                true
            }
            ConfigItem::CheckIpSource(source) => self.check_ip.push(source.clone()).is_ok(),
            ConfigItem::DynDns(dyndns) => {
                self.dyndns = Some(dyndns.clone());
                self.host_name.clear();
                let _ = self.host_name.push_str(dyndns.host_name.as_str());
                true
            }
            ConfigItem::Limits(limits) => {
                self.message_size = (limits.max_message_bytes as u64).min(DEFAULT_MESSAGE_SIZE);
                self.spool_reserve_bytes = limits.spool_reserve_bytes as u64;
                self.max_recipients = usize::from(limits.max_recipients).clamp(1, homemx_spool::MAX_RECIPIENTS);
                if limits.messages_per_client_per_hour > 0 {
                    self.messages_per_client_per_hour = limits.messages_per_client_per_hour;
                }
                true
            }
            ConfigItem::Smarthost(smarthost) => {
                self.smarthost = Some(smarthost.clone());
                true
            }
            ConfigItem::BackupMx(backup) => {
                self.backup_mx = Some(backup.clone());
                true
            }
            ConfigItem::TimeServer(server) => {
                let _ = self.time_servers.push(server.clone());
                true
            }
            ConfigItem::Submission(submission) => {
                self.submission = *submission;
                true
            }
            ConfigItem::Acme(acme) => {
                self.acme = Some((acme.challenge, acme.name.clone()));
                true
            }
            // Users are looked up in the store at AUTH (their password records stay in flash).
            _ => true,
        }
    }

    /// Moves what was read into `settings`, whose relay tables [`Details::apply`] filled: the
    /// default host name when nothing named one, and LAN clients may send to other domains only
    /// through a smarthost (without one the appliance is an inbound-only MX and they get
    /// `550 5.7.1 outbound mail is not configured`).
    pub fn finish(self, settings: &mut MailSettings) {
        let Details {
            mailbox,
            mut host_name,
            postmaster_domain,
            message_size,
            spool_reserve_bytes,
            smarthost,
            max_recipients,
            messages_per_client_per_hour,
            time_servers,
            backup_mx,
            dyndns,
            check_ip,
            submission,
            acme,
        } = self;
        if host_name.is_empty() {
            let _ = host_name.push_str(DEFAULT_HOST_NAME);
        }
        settings.relay.set_lan_may_relay(smarthost.is_some());
        // Relaying for a LAN address without AUTH only on the owner's explicit opt-in (the
        // weaker mode: any device on the LAN, a compromised one too, then sends as anyone).
        settings.relay.set_lan_relay_without_auth(submission.lan_relay_without_auth);
        settings.submission_requires_auth = submission.requires_auth;
        settings.mailbox = mailbox;
        settings.host_name = host_name;
        settings.postmaster_domain = postmaster_domain;
        settings.message_size = message_size;
        settings.spool_reserve_bytes = spool_reserve_bytes;
        settings.smarthost = smarthost;
        settings.max_recipients = max_recipients;
        settings.messages_per_client_per_hour = messages_per_client_per_hour;
        settings.time_servers = time_servers;
        settings.backup_mx = backup_mx;
        settings.dyndns = dyndns;
        settings.check_ip = check_ip;
        // The certificate is for the TLS identity's name: an account for another name is not run
        // (the CLI refuses it; a device sees only what it was sent).
        settings.acme = acme.and_then(|(challenge, name)| name.as_str().eq_ignore_ascii_case(settings.host_name.as_str()).then_some(challenge));
    }
}

#[cfg(test)]
mod tests;
