//! The rules a configuration must meet, one copy for the CLI (before it sends) and the device
//! (which refuses what breaks them, whoever signed it).
//!
//! - [`check_item`]: the rules of one [`ConfigItem`] on its own (host-name syntax, ports,
//!   intervals, limits, a recipient's local part, a LAN prefix's length, a check-IP path, a
//!   mail user's name, password record (known algorithm, iterations in range) and quota, the
//!   ACME account's directory URL ([`acme_directory`]), name, contact, key id and size).
//! - [`ConfigurationCheck`]: the rules of the whole configuration, fed the items one by one as
//!   they stream in ([`ConfigurationCheck::add`]) and closed with
//!   [`ConfigurationCheck::finish`]: at least one domain, LAN network and mailbox host; each
//!   section (`[tls.acme]` too) at most once; no more domains, recipients, LAN networks, time servers and check-IP
//!   services than the device keeps; a recipient's domain sent as a `Domain` before it (the
//!   device's relay tables need that order); with DynDNS, check-IP services on at least two
//!   distinct hosts; at most [`MAX_USERS`] mail users, no name twice, each in a domain sent
//!   before it. It holds counts and 64-bit fingerprints of names, not the names: about 240
//!   bytes, so the device can keep one while a configuration is staged.
//!
//! A [`Refusal`] names the field (as the owner's TOML file names it) and the rule in words.
//! No allocator, no I/O. Calls: `config`.

use crate::config::{CheckIpSource, ConfigItem, HostName, MailUser, MAX_URL_PATH};

/// Fewest seconds between two fetches from the backup MX.
pub const MIN_POLL_INTERVAL_SECONDS: u32 = 60;
/// Fewest seconds between two DynDNS checks.
pub const MIN_CHECK_INTERVAL_SECONDS: u32 = 60;
/// Smallest `Limits::max_message_bytes`: a smaller limit would refuse every real message.
pub const MIN_MESSAGE_BYTES: u32 = 1024;
/// Shortest LAN prefix: a shorter one would make much of the world a LAN client.
pub const MIN_LAN_PREFIX_LENGTH: u8 = 8;
/// Fewest check-IP services with DynDNS: the answer decides where the domain's mail is sent,
/// so no single service may decide it (the device requires two distinct hosts to agree).
pub const MIN_CHECK_IP_SOURCES: usize = 2;
/// Most check-IP services the device keeps.
pub const MAX_CHECK_IP_SOURCES: usize = 4;
/// Most time servers the device keeps.
pub const MAX_TIME_SERVERS: usize = 2;
/// Most accepted domains the device keeps (its relay tables).
pub const MAX_DOMAINS: usize = 8;
/// Most known recipients the device keeps (its relay tables).
pub const MAX_KNOWN_RECIPIENTS: usize = 64;
/// Most LAN networks the device keeps (its relay tables).
pub const MAX_LAN_PREFIXES: usize = 8;
/// Most mail users the device keeps (`[[users]]`, SMTP `AUTH`): a household's, with room.
pub const MAX_USERS: usize = 16;
/// Longest local part of a mail user's name (RFC 5321 §4.5.3.1.1), in bytes.
pub const MAX_USER_LOCAL_PART: usize = 64;
/// Longest host name (RFC 1035), in bytes.
pub const MAX_HOST_NAME_LENGTH: usize = 253;
/// Longest label of a host name, in bytes.
pub const MAX_LABEL_LENGTH: usize = 63;
/// Characters a recipient's local part may not hold: the relay tricks (`%`-hack, `!` paths,
/// `@a:b@c`, quoted `@`) and a space.
pub const FORBIDDEN_LOCAL_PART_CHARACTERS: [char; 6] = ['@', '%', '!', ' ', '"', ':'];

/// Why a configuration (or one item of it) is refused: the field and the rule it breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The field as the owner's TOML file names it, e.g. `smarthost.port` or `recipients`.
    pub field: &'static str,
    /// The rule, in words, e.g. `must be 1..=65535`.
    pub rule: &'static str,
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(formatter, "{}: {}", self.field, self.rule)
    }
}

const fn refuse(field: &'static str, rule: &'static str) -> Refusal {
    Refusal { field, rule }
}

/// The rule words of [`host_name`].
pub const HOST_NAME_RULE: &str = "is not a host name (dot-separated labels of 1..=63 letters, digits and `-`, not starting or ending with `-`; at most 253 bytes)";
/// The rule words of [`port`].
pub const PORT_RULE: &str = "must be 1..=65535";
/// The rule words of a LAN prefix shorter than [`MIN_LAN_PREFIX_LENGTH`].
pub const LAN_PREFIX_SHORT_RULE: &str = "a LAN prefix shorter than /8 would make the world a LAN client";
/// The rule words of a LAN prefix longer than 32.
pub const LAN_PREFIX_LONG_RULE: &str = "length must be 0..=32";

/// Host-name syntax: letters, digits and `-` in dot-separated labels (any case).
pub fn host_name(name: &str) -> Result<(), &'static str> {
    let valid = !name.is_empty()
        && name.len() <= MAX_HOST_NAME_LENGTH
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_LENGTH
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        });
    if valid {
        Ok(())
    } else {
        Err(HOST_NAME_RULE)
    }
}

/// A port: 1..=65535.
pub fn port(value: u16) -> Result<(), &'static str> {
    if value == 0 {
        Err(PORT_RULE)
    } else {
        Ok(())
    }
}

/// A LAN prefix length: [`MIN_LAN_PREFIX_LENGTH`]..=32.
pub fn lan_prefix_length(length: u8) -> Result<(), &'static str> {
    if length > 32 {
        Err(LAN_PREFIX_LONG_RULE)
    } else if length < MIN_LAN_PREFIX_LENGTH {
        Err(LAN_PREFIX_SHORT_RULE)
    } else {
        Ok(())
    }
}

/// What is wrong with a recipient address, in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressProblem {
    /// No `@`.
    NotAnAddress,
    /// The local part is empty or holds a character of [`FORBIDDEN_LOCAL_PART_CHARACTERS`].
    LocalPart,
    /// The domain is not a host name.
    Domain,
}

impl AddressProblem {
    /// The rule in words.
    pub fn rule(self) -> &'static str {
        match self {
            AddressProblem::NotAnAddress => "is not local@domain",
            AddressProblem::LocalPart => "has an unusable local part (empty, or one of @ % ! space \" :)",
            AddressProblem::Domain => "has a domain that is not a host name",
        }
    }
}

/// A recipient address split into (local part, domain), checked: a usable local part (none of
/// the relay tricks' characters) and a host name as the domain.
pub fn recipient(address: &str) -> Result<(&str, &str), AddressProblem> {
    let (local, domain) = address.rsplit_once('@').ok_or(AddressProblem::NotAnAddress)?;
    if local.is_empty() || local.contains(FORBIDDEN_LOCAL_PART_CHARACTERS) {
        return Err(AddressProblem::LocalPart);
    }
    host_name(domain).map_err(|_| AddressProblem::Domain)?;
    Ok((local, domain))
}

/// The rule words of [`user_name`].
pub const USER_NAME_RULE: &str = "a user name is the user's mail address, local@domain in lower case: a local part of 1..=64 of a-z 0-9 . _ + - (no leading, trailing or double dot) and a host name as the domain";
/// The rule words of a user's hourly quota of zero.
pub const USER_QUOTA_RULE: &str = "messages_per_hour must be at least 1 (leave it out for the [limits] figure; remove the user to stop them sending)";

/// A mail user's login name: the user's address, `local@domain`, all lower case (AUTH compares
/// names in lower case; the CLI lower-cases what the owner types). The local part is a
/// dot-atom of `a-z 0-9 . _ + -` only (1..=64 bytes, no leading, trailing or double dot): the
/// name is typed into mail clients, travels in `AUTH PLAIN` (NUL-separated) and `AUTH LOGIN`,
/// and is written into logs and `Received:` headers, so quotes, spaces, control characters and
/// the relay tricks' `% ! : @` have no place in it. The full address, not a bare local part:
/// it names one user across several domains, it is what mail clients offer as the login, and
/// the SMTP side can tie the user to the sender address.
pub fn user_name(name: &str) -> Result<(), &'static str> {
    let (local, domain) = name.rsplit_once('@').ok_or(USER_NAME_RULE)?;
    let local_valid = !local.is_empty()
        && local.len() <= MAX_USER_LOCAL_PART
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'.' | b'_' | b'+' | b'-'));
    if !local_valid || host_name(domain).is_err() || domain.bytes().any(|byte| byte.is_ascii_uppercase()) {
        return Err(USER_NAME_RULE);
    }
    Ok(())
}

fn check_user(user: &MailUser) -> Result<(), Refusal> {
    user_name(user.name.as_str()).map_err(|rule| refuse("users.name", rule))?;
    user.password.check().map_err(|problem| refuse("users.password", problem.rule()))?;
    if user.messages_per_hour == Some(0) {
        return Err(refuse("users.messages_per_hour", USER_QUOTA_RULE));
    }
    Ok(())
}

/// The rule words of [`check_ip_path`].
pub const CHECK_IP_PATH_RULE: &str = "the path must start with `/` and hold only visible ASCII (no space or line break: it goes into the HTTP request line)";

/// A check-IP service's URL path: starts with `/`, visible ASCII only (it is written into the
/// HTTP request line; a space or line break would change the request). At most
/// [`MAX_URL_PATH`] bytes by its type.
pub fn check_ip_path(path: &str) -> Result<(), &'static str> {
    if path.starts_with('/') && path.len() <= MAX_URL_PATH && path.bytes().all(|byte| byte.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(CHECK_IP_PATH_RULE)
    }
}

fn named(field: &'static str, name: &HostName) -> Result<(), Refusal> {
    host_name(name.as_str()).map_err(|rule| refuse(field, rule))
}

fn ported(field: &'static str, value: u16) -> Result<(), Refusal> {
    port(value).map_err(|rule| refuse(field, rule))
}

fn at_least(field: &'static str, value: u32, minimum: u32, rule: &'static str) -> Result<(), Refusal> {
    if value < minimum {
        Err(refuse(field, rule))
    } else {
        Ok(())
    }
}

/// The rules of one item on its own.
pub fn check_item(item: &ConfigItem) -> Result<(), Refusal> {
    match item {
        ConfigItem::Domain(name) => named("domains", name),
        ConfigItem::Recipient(address) => recipient(address.as_str()).map(|_| ()).map_err(|problem| refuse("recipients", problem.rule())),
        ConfigItem::LanPrefix(prefix) => lan_prefix_length(prefix.length).map_err(|rule| refuse("lan_prefixes", rule)),
        ConfigItem::LanMailbox(mailbox) => ported("lan_mailbox.port", mailbox.port),
        ConfigItem::Smarthost(smarthost) => {
            named("smarthost.host", &smarthost.host)?;
            ported("smarthost.port", smarthost.port)
        }
        ConfigItem::BackupMx(backup) => {
            named("backup_mx.host", &backup.host)?;
            ported("backup_mx.port", backup.port)?;
            at_least("backup_mx.poll_interval_seconds", backup.poll_interval_seconds, MIN_POLL_INTERVAL_SECONDS, "at least 60")
        }
        ConfigItem::DynDns(dyndns) => {
            named("dyndns.server", &dyndns.server)?;
            named("dyndns.host_name", &dyndns.host_name)?;
            at_least("dyndns.check_interval_seconds", dyndns.check_interval_seconds, MIN_CHECK_INTERVAL_SECONDS, "at least 60")
        }
        ConfigItem::Limits(limits) => {
            at_least("limits.max_message_bytes", limits.max_message_bytes, MIN_MESSAGE_BYTES, "at least 1024")?;
            at_least("limits.max_recipients", u32::from(limits.max_recipients), 1, "at least 1")
        }
        ConfigItem::StatusPage(page) => {
            ported("status_page.port", page.port)?;
            named("status_page.host_name", &page.host_name)
        }
        ConfigItem::TimeServer(name) => named("time_servers", name),
        ConfigItem::CheckIpSource(CheckIpSource { host, path }) => {
            named("dyndns.check_ip", host)?;
            check_ip_path(path.as_str()).map_err(|rule| refuse("dyndns.check_ip", rule))
        }
        ConfigItem::User(user) => check_user(user),
        // Every combination of the two switches is coherent (see `config::Submission`).
        ConfigItem::Submission(_) => Ok(()),
        ConfigItem::Acme(acme) => check_acme(acme),
    }
}

/// The rule words of [`acme_directory`].
pub const ACME_DIRECTORY_RULE: &str =
    "must be an https:// URL, https://host[:port]/path, the path visible ASCII only (the device speaks to the ACME server only over TLS)";
/// The rule words of the ACME item's size.
pub const ACME_SIZE_RULE: &str = "directory, name, contact and eab_key_id together must stay under 224 bytes (the device keeps the item in one 256-byte record)";
/// The rule words of an External Account Binding key id.
pub const EAB_KEY_ID_RULE: &str = "the key id must be 1..=64 visible ASCII characters";

/// An ACME directory URL: `https://`, a host name, an optional port (1..=65535), and a path
/// of visible ASCII starting with `/` (it goes into the HTTP request line).
pub fn acme_directory(url: &str) -> Result<(), &'static str> {
    let rest = url.strip_prefix("https://").ok_or(ACME_DIRECTORY_RULE)?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |slash| (&rest[..slash], &rest[slash..]));
    let host = match authority.rsplit_once(':') {
        Some((host, port_text)) => {
            let number: u16 = port_text.parse().map_err(|_| ACME_DIRECTORY_RULE)?;
            port(number).map_err(|_| ACME_DIRECTORY_RULE)?;
            host
        }
        None => authority,
    };
    host_name(host).map_err(|_| ACME_DIRECTORY_RULE)?;
    if !path.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(ACME_DIRECTORY_RULE);
    }
    Ok(())
}

fn check_acme(acme: &crate::config::Acme) -> Result<(), Refusal> {
    acme_directory(acme.directory.as_str()).map_err(|rule| refuse("tls.acme.directory", rule))?;
    named("tls.acme.name", &acme.name)?;
    if let Some(contact) = &acme.contact {
        recipient(contact.as_str()).map_err(|problem| refuse("tls.acme.contact", problem.rule()))?;
    }
    if let Some(key_id) = &acme.eab_key_id {
        if key_id.is_empty() || !key_id.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(refuse("tls.acme.eab_key_id", EAB_KEY_ID_RULE));
        }
    }
    let size = acme.directory.len() + acme.name.len() + acme.contact.as_ref().map_or(0, |contact| contact.len())
        + acme.eab_key_id.as_ref().map_or(0, |key_id| key_id.len());
    if size >= 224 {
        return Err(refuse("tls.acme", ACME_SIZE_RULE));
    }
    Ok(())
}

/// A name's fingerprint: 64-bit FNV-1a of its bytes in lower case. Names are compared by
/// fingerprint so the check holds no names; two different names share one with a chance of
/// about 2⁻⁶⁴ (then a duplicate check-IP host or a recipient of an unsent domain would pass
/// here, and the device's relay tables would still refuse that recipient).
fn fingerprint(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3))
}

/// The whole-configuration rules, fed item by item (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigurationCheck {
    domains: [u64; MAX_DOMAINS],
    check_ip_hosts: [u64; MAX_CHECK_IP_SOURCES],
    users: [u64; MAX_USERS],
    user_count: u8,
    domain_count: u8,
    check_ip_count: u8,
    recipient_count: u8,
    lan_prefix_count: u8,
    time_server_count: u8,
    /// Bits of the sections seen once: see `SECTION_*`.
    sections: u8,
}

const SECTION_LAN_MAILBOX: u8 = 1 << 0;
const SECTION_SMARTHOST: u8 = 1 << 1;
const SECTION_BACKUP_MX: u8 = 1 << 2;
const SECTION_DYNDNS: u8 = 1 << 3;
const SECTION_LIMITS: u8 = 1 << 4;
const SECTION_STATUS_PAGE: u8 = 1 << 5;
const SECTION_SUBMISSION: u8 = 1 << 6;
const SECTION_ACME: u8 = 1 << 7;

impl Default for ConfigurationCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigurationCheck {
    /// Nothing seen yet.
    pub const fn new() -> Self {
        Self {
            domains: [0; MAX_DOMAINS],
            check_ip_hosts: [0; MAX_CHECK_IP_SOURCES],
            users: [0; MAX_USERS],
            user_count: 0,
            domain_count: 0,
            check_ip_count: 0,
            recipient_count: 0,
            lan_prefix_count: 0,
            time_server_count: 0,
            sections: 0,
        }
    }

    /// Checks the next item: its own rules ([`check_item`]) and those it breaks with the items
    /// before it. A refused item leaves the check as it was.
    pub fn add(&mut self, item: &ConfigItem) -> Result<(), Refusal> {
        check_item(item)?;
        match item {
            ConfigItem::Domain(name) => {
                let slot = self.domains.get_mut(usize::from(self.domain_count)).ok_or(refuse("domains", "at most 8 domains (the device keeps 8)"))?;
                *slot = fingerprint(name.as_str());
                self.domain_count += 1;
            }
            ConfigItem::Recipient(address) => {
                if usize::from(self.recipient_count) >= MAX_KNOWN_RECIPIENTS {
                    return Err(refuse("recipients", "at most 64 recipients (the device keeps 64)"));
                }
                let domain = address.as_str().rsplit_once('@').map_or("", |(_, domain)| domain);
                if !self.domains[..usize::from(self.domain_count)].contains(&fingerprint(domain)) {
                    return Err(refuse("recipients", "the recipient's domain is not one of the domains (sent before it)"));
                }
                self.recipient_count += 1;
            }
            ConfigItem::LanPrefix(_) => {
                if usize::from(self.lan_prefix_count) >= MAX_LAN_PREFIXES {
                    return Err(refuse("lan_prefixes", "at most 8 LAN networks (the device keeps 8)"));
                }
                self.lan_prefix_count += 1;
            }
            ConfigItem::TimeServer(_) => {
                if usize::from(self.time_server_count) >= MAX_TIME_SERVERS {
                    return Err(refuse("time_servers", "at most 2 time servers (the device keeps 2)"));
                }
                self.time_server_count += 1;
            }
            ConfigItem::CheckIpSource(source) => {
                let host = fingerprint(source.host.as_str());
                if self.check_ip_hosts[..usize::from(self.check_ip_count)].contains(&host) {
                    return Err(refuse(
                        "dyndns.check_ip",
                        "a host listed twice: one service asked twice is one witness, not two agreeing sources",
                    ));
                }
                let slot = self
                    .check_ip_hosts
                    .get_mut(usize::from(self.check_ip_count))
                    .ok_or(refuse("dyndns.check_ip", "at most 4 check-IP services (the device keeps 4)"))?;
                *slot = host;
                self.check_ip_count += 1;
            }
            ConfigItem::User(user) => {
                let name = user.name.as_str();
                let key = fingerprint(name);
                if self.users[..usize::from(self.user_count)].contains(&key) {
                    return Err(refuse("users.name", "a user name listed twice: each user once (to change a password, replace the entry)"));
                }
                let domain = name.rsplit_once('@').map_or("", |(_, domain)| domain);
                if !self.domains[..usize::from(self.domain_count)].contains(&fingerprint(domain)) {
                    return Err(refuse("users.name", "the user's domain is not one of the domains (sent before it)"));
                }
                let slot = self.users.get_mut(usize::from(self.user_count)).ok_or(refuse("users", "at most 16 users (the device keeps 16)"))?;
                *slot = key;
                self.user_count += 1;
            }
            ConfigItem::Submission(_) => self.once(SECTION_SUBMISSION, "submission_requires_auth")?,
            ConfigItem::LanMailbox(_) => self.once(SECTION_LAN_MAILBOX, "lan_mailbox")?,
            ConfigItem::Smarthost(_) => self.once(SECTION_SMARTHOST, "smarthost")?,
            ConfigItem::BackupMx(_) => self.once(SECTION_BACKUP_MX, "backup_mx")?,
            ConfigItem::DynDns(_) => self.once(SECTION_DYNDNS, "dyndns")?,
            ConfigItem::Limits(_) => self.once(SECTION_LIMITS, "limits")?,
            ConfigItem::StatusPage(_) => self.once(SECTION_STATUS_PAGE, "status_page")?,
            ConfigItem::Acme(_) => self.once(SECTION_ACME, "tls.acme")?,
        }
        Ok(())
    }

    fn once(&mut self, section: u8, field: &'static str) -> Result<(), Refusal> {
        if self.sections & section != 0 {
            return Err(refuse(field, "given twice: the section is sent at most once"));
        }
        self.sections |= section;
        Ok(())
    }

    /// The rules that need every item: at least one domain, one LAN network and the mailbox
    /// host; with DynDNS, at least [`MIN_CHECK_IP_SOURCES`] check-IP services.
    pub fn finish(&self) -> Result<(), Refusal> {
        if self.domain_count == 0 {
            return Err(refuse("domains", "at least one domain is needed"));
        }
        if self.lan_prefix_count == 0 {
            return Err(refuse("lan_prefixes", "at least one LAN network is needed"));
        }
        if self.sections & SECTION_LAN_MAILBOX == 0 {
            return Err(refuse("lan_mailbox", "the LAN mailbox host is needed (where accepted mail is delivered)"));
        }
        if self.sections & SECTION_DYNDNS != 0 && usize::from(self.check_ip_count) < MIN_CHECK_IP_SOURCES {
            return Err(refuse(
                "dyndns.check_ip",
                "at least 2 check-IP services on distinct hosts are needed: the device learns its public address only when two agree",
            ));
        }
        Ok(())
    }

    /// The mail users seen so far.
    pub fn users(&self) -> usize {
        usize::from(self.user_count)
    }

    /// The check-IP services seen so far (for messages).
    pub fn check_ip_sources(&self) -> usize {
        usize::from(self.check_ip_count)
    }
}

/// Runs every item through a [`ConfigurationCheck`] and finishes it: the whole rule set.
pub fn check_configuration<'a>(items: impl IntoIterator<Item = &'a ConfigItem>) -> Result<(), Refusal> {
    let mut check = ConfigurationCheck::new();
    for item in items {
        check.add(item)?;
    }
    check.finish()
}
