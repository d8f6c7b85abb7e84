//! The owner's `homemx.toml`: parsed, validated (errors name the field), and turned into the
//! wire's configuration items, credentials and trust anchors. The rules of the items are the
//! wire's ([`homemx_wire::validate`], which the device applies too): this module parses the
//! file's text forms (URLs, `a.b.c.d/len`, `smtp`/`lmtp`, …), asks the wire's rules and words
//! their refusals for the owner. `provision` and `config set` plan with [`load`], `homemx init`
//! checks what it writes with [`check_fields`] before the password and certificate files it
//! names exist, and each answer at the terminal with the field checks ([`host_name`],
//! [`recipient`], [`lan_prefix`], [`ipv4`], [`delivery_protocol`], [`port`], [`tls`],
//! [`user_name`]) that [`plan`] applies.
//!
//! Mail users (`[[users]]`): each names a password file (relative to the configuration file's
//! folder), read only if it is private to its owner ([`check_private`], as ssh treats a private
//! key), checked with [`user_password`], and hashed with a fresh random salt
//! ([`homemx_credentials::PasswordRecord`]) every time a plan is made: only the record goes
//! into the plan, never the password.
//!
//! `[tls.acme]`: the ACME account ([`ConfigItem::Acme`]), its name checked against the MX host
//! name the device's TLS identity is for; the ACME server's CA certificate goes as the
//! `TlsService::Acme` trust anchor, the External Account Binding MAC key (a private file, like a
//! user's password file) as the `Credential::AcmeEabKey` credential.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use homemx_credentials::PasswordRecord;

use homemx_wire::config::*;
use homemx_wire::message::{Credential, TlsService};
use homemx_wire::secret::Secret;
use homemx_wire::validate::{self, AddressProblem, ConfigurationCheck, Refusal};
use serde::{Deserialize, Serialize};

use crate::anchor;
use crate::error::{CliError, ExitCode, Result};

/// The whole file.
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Domains accepted.
    pub domains: Vec<String>,
    /// Recipients accepted.
    pub recipients: Vec<String>,
    /// LAN networks, `a.b.c.d/len`.
    pub lan_prefixes: Vec<String>,
    /// The LAN mailbox host.
    pub lan_mailbox: LanMailboxSection,
    /// The smarthost; without it the appliance is an inbound-only MX (LAN clients' mail to other
    /// domains is refused with `550 5.7.1 outbound mail is not configured`).
    pub smarthost: Option<ServiceSection>,
    /// The backup MX (POP3).
    pub backup_mx: Option<BackupMxSection>,
    /// DynDNS.
    pub dyndns: Option<DynDnsSection>,
    /// Limits.
    #[serde(default)]
    pub limits: LimitsSection,
    /// The status page.
    #[serde(default)]
    pub status_page: StatusPageSection,
    /// SNTP servers (host names); empty: the default gateway is asked.
    #[serde(default)]
    pub time_servers: Vec<String>,
    /// The submission ports (587, 465) take mail only after SMTP AUTH as one of `users`.
    #[serde(default = "default_true")]
    pub submission_requires_auth: bool,
    /// LAN clients may relay by their address alone, without AUTH (weaker: a compromised LAN
    /// device then sends as anyone).
    #[serde(default)]
    pub lan_relay_without_auth: bool,
    /// Mail users who submit with SMTP AUTH (`homemx user add` writes these).
    #[serde(default)]
    pub users: Vec<UserSection>,
    /// `[tls]`: the device's TLS identity (today only `[tls.acme]`).
    #[serde(default)]
    pub tls: TlsSection,
}

/// `[tls]`.
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// `[tls.acme]`: the device obtains and renews its certificate from an ACME CA.
    pub acme: Option<AcmeSection>,
}

/// `[tls.acme]`.
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AcmeSection {
    /// The directory URL (`https://`).
    pub directory: String,
    /// The name the certificate is for: the MX host name (the `[dyndns]` host name, else
    /// `mx.` and the first domain).
    pub name: String,
    /// The CA certificate (PEM or DER) the device trusts for the ACME server's HTTPS.
    pub ca_certificate: PathBuf,
    /// The owner's address the CA may write to (optional).
    pub contact: Option<String>,
    /// The owner agrees to the CA's terms of service.
    #[serde(default)]
    pub agree_terms: bool,
    /// External Account Binding: the key id the CA gave.
    pub eab_key_id: Option<String>,
    /// External Account Binding: the file holding the MAC key (base64url, first line; mode 0600).
    pub eab_hmac_key_file: Option<PathBuf>,
    /// `"http-01"` (default; port 80 of the WAN side) or `"tls-alpn-01"` (port 443).
    pub challenge: Option<String>,
    /// Keep the TLS identity's key across renewals (a published TLSA record stays valid).
    #[serde(default = "default_true")]
    pub reuse_key: bool,
}

fn default_true() -> bool {
    true
}

/// `[[users]]`: one mail user.
#[derive(Debug, Deserialize, Serialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    /// The login name: the user's address (`alice@example.org`), in a domain of `domains`.
    pub name: String,
    /// File holding the password (relative to the configuration file's folder; mode 0600).
    pub password_file: PathBuf,
    /// Most messages this user may submit per hour (default: `[limits]`'s per-client figure).
    pub messages_per_hour: Option<u16>,
}

/// `[lan_mailbox]`.
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LanMailboxSection {
    /// IPv4 address.
    pub address: String,
    /// Port.
    pub port: u16,
    /// `smtp` or `lmtp`.
    pub protocol: String,
}

/// TLS fields shared by the provider services: the trust anchor (exactly one must be given) and
/// the oldest TLS version accepted.
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AnchorFields {
    /// A CA certificate (PEM or DER) that must sign the server's certificate.
    pub ca_certificate: Option<PathBuf>,
    /// A server certificate whose public key is pinned (SHA-256 of its SPKI).
    pub pin_certificate: Option<PathBuf>,
    /// The pin itself, 64 hex digits.
    pub spki_sha256: Option<String>,
    /// The oldest TLS version accepted: "1.2" (default) or "1.3".
    pub min_tls: Option<String>,
}

/// `[smarthost]`.
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `implicit` or `starttls`.
    pub tls: String,
    /// User name.
    pub user_name: String,
    /// File holding the password (first line).
    pub password_file: Option<PathBuf>,
    /// Trust anchor.
    #[serde(flatten)]
    pub anchor: AnchorFields,
}

/// `[backup_mx]`.
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BackupMxSection {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `implicit` or `starttls`.
    pub tls: String,
    /// User name.
    pub user_name: String,
    /// Seconds between fetches.
    pub poll_interval_seconds: u32,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Trust anchor.
    #[serde(flatten)]
    pub anchor: AnchorFields,
}

/// `[dyndns]`.
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DynDnsSection {
    /// Update server.
    pub server: String,
    /// Host name kept current.
    pub host_name: String,
    /// User name.
    pub user_name: String,
    /// Seconds between checks.
    pub check_interval_seconds: u32,
    /// HTTPS check-IP services (`https://host/path`), verified with this section's anchor: at
    /// least [`MIN_CHECK_IP_SOURCES`] on distinct hosts, at most [`MAX_CHECK_IP_SOURCES`].
    #[serde(default)]
    pub check_ip: Vec<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Trust anchor.
    #[serde(flatten)]
    pub anchor: AnchorFields,
}

/// `[limits]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Largest message in bytes.
    pub max_message_bytes: u32,
    /// Most recipients per message.
    pub max_recipients: u16,
    /// Most outbound messages per LAN client per hour.
    pub messages_per_client_per_hour: u16,
    /// Free spool bytes kept in reserve (452 below).
    pub spool_reserve_bytes: u32,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self { max_message_bytes: 25 << 20, max_recipients: 50, messages_per_client_per_hour: 100, spool_reserve_bytes: 1 << 20 }
    }
}

/// `[status_page]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusPageSection {
    /// Served at all.
    pub enabled: bool,
    /// Port.
    pub port: u16,
    /// The only accepted `Host:`.
    pub host_name: String,
}

impl Default for StatusPageSection {
    fn default() -> Self {
        Self { enabled: true, port: 80, host_name: "homemx.lan".into() }
    }
}

/// Where a trust anchor comes from, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorValue {
    /// DER of a CA certificate.
    Certificate(Vec<u8>),
    /// SPKI SHA-256 pin.
    Pin([u8; 32]),
}

/// Everything `provision` / `config set` sends.
#[derive(Debug)]
pub struct Plan {
    /// Configuration items, in order (a user's password only as its salted hash).
    pub items: Vec<ConfigItem>,
    /// Credentials.
    pub credentials: Vec<(Credential, Secret)>,
    /// Trust anchors.
    pub anchors: Vec<(TlsService, AnchorValue)>,
    /// What the owner should know before sending (a weaker submission policy, nobody able to
    /// send outbound mail); printed on stderr, not refused.
    pub warnings: Vec<String>,
}

impl Plan {
    /// Words from the configuration an attacker guessing the storage passphrase would try
    /// first: the domains, the recipients' local parts and the account user names.
    pub fn context_words(&self) -> Vec<&str> {
        let mut words = Vec::new();
        for item in &self.items {
            match item {
                ConfigItem::Domain(name) => words.extend(name.as_str().split('.')),
                ConfigItem::Recipient(address) => words.extend(address.as_str().split(['@', '.'])),
                ConfigItem::Smarthost(smarthost) => words.push(smarthost.user_name.as_str()),
                ConfigItem::BackupMx(backup) => words.push(backup.user_name.as_str()),
                ConfigItem::DynDns(dyndns) => words.push(dyndns.user_name.as_str()),
                _ => {}
            }
        }
        words.retain(|word| word.len() >= 3);
        words
    }
}

pub use homemx_wire::validate::{MAX_CHECK_IP_SOURCES, MIN_CHECK_IP_SOURCES};

const CHECK_IP_HINT: &str = "list at least two check-IP services run by different hosts (ideally different operators), e.g. check_ip = [\"https://checkip.provider.example/\", \"https://ip.other-operator.example/ip\"]; both must answer with a certificate the [dyndns] trust anchor verifies";

fn invalid(field: &str, message: impl std::fmt::Display) -> CliError {
    CliError::new(ExitCode::Configuration, format!("{field}: {message}"))
        .hint("fix the field in the TOML file; host-tools/cli/homemx.example.toml documents every field")
}

/// A refusal of the wire's rules as an error naming the field.
fn refused(refusal: Refusal) -> CliError {
    invalid(refusal.field, refusal.rule)
}

fn bounded<const N: usize>(field: &str, value: &str) -> Result<heapless::String<N>> {
    heapless::String::try_from(value).map_err(|_| invalid(field, format!("longer than {N} bytes")))
}

/// A host name (also a domain): letters, digits and `-` in dot-separated labels; lower-cased.
pub fn host_name(field: &str, value: &str) -> Result<HostName> {
    validate::host_name(value).map_err(|_| invalid(field, format!("{value:?} is not a host name")))?;
    bounded(field, &value.to_ascii_lowercase())
}

/// A port, 1..=65535.
pub fn port(field: &str, value: u16) -> Result<u16> {
    validate::port(value).map_err(|rule| invalid(field, rule))?;
    Ok(value)
}

/// `min_tls`: "1.2" (the default when absent) or "1.3".
pub fn min_tls(field: &str, value: Option<&str>) -> Result<MinTls> {
    match value {
        None | Some("1.2") => Ok(MinTls::Tls12),
        Some("1.3") => Ok(MinTls::Tls13),
        Some(other) => Err(invalid(field, format!("{other:?} is not \"1.2\" or \"1.3\" (older versions are never accepted)"))),
    }
}

/// `implicit` or `starttls`.
pub fn tls(field: &str, value: &str) -> Result<TlsMode> {
    match value {
        "implicit" => Ok(TlsMode::Implicit),
        "starttls" => Ok(TlsMode::StartTls),
        other => Err(invalid(field, format!("{other:?} is not `implicit` or `starttls` (TLS is always required)"))),
    }
}

/// An IPv4 address, `a.b.c.d`.
pub fn ipv4(field: &str, value: &str) -> Result<[u8; 4]> {
    value.parse::<Ipv4Addr>().map(|address| address.octets()).map_err(|_| invalid(field, format!("{value:?} is not an IPv4 address")))
}

/// An account's user name (at most [`MAX_USER_NAME`] bytes).
pub fn user_name(field: &str, value: &str) -> Result<UserName> {
    bounded(field, value)
}

/// A recipient, `local@domain`, whose domain is one of `domains` (lower-case, as [`host_name`]
/// returns them); the local part without the characters of relay tricks.
pub fn recipient(field: &str, value: &str, domains: &[String]) -> Result<MailAddress> {
    let (local, domain) = validate::recipient(value).map_err(|problem| match problem {
        AddressProblem::NotAnAddress => invalid(field, format!("{value:?} is not local@domain")),
        AddressProblem::LocalPart => invalid(field, format!("{value:?} has an unusable local part")),
        AddressProblem::Domain => invalid(field, format!("{:?} is not a host name", value.rsplit_once('@').map_or("", |(_, domain)| domain))),
    })?;
    let domain = host_name(field, domain)?;
    // Listed by the owner: the whole-configuration rule (`validate::ConfigurationCheck`, which
    // `plan` applies too) also wants each domain sent before its recipients.
    if !domains.iter().any(|known| known == domain.as_str()) {
        return Err(invalid(field, format!("domain {domain} is not in `domains`")));
    }
    bounded(field, &format!("{local}@{domain}"))
}

/// A LAN network, `a.b.c.d/length`, at least /8.
pub fn lan_prefix(field: &str, value: &str) -> Result<Ipv4Prefix> {
    let (address, length) = value.split_once('/').ok_or_else(|| invalid(field, "needs a.b.c.d/length"))?;
    let address = ipv4(field, address)?;
    let length: u8 = length.parse().map_err(|_| invalid(field, validate::LAN_PREFIX_LONG_RULE))?;
    validate::lan_prefix_length(length).map_err(|rule| invalid(field, rule))?;
    Ok(Ipv4Prefix { address, length })
}

/// How mail is handed to the LAN mailbox host: `smtp` or `lmtp`.
pub fn delivery_protocol(field: &str, value: &str) -> Result<DeliveryProtocol> {
    match value {
        "smtp" => Ok(DeliveryProtocol::Smtp),
        "lmtp" => Ok(DeliveryProtocol::Lmtp),
        other => Err(invalid(field, format!("{other:?} is not `smtp` or `lmtp`"))),
    }
}

fn read_relative(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// A user's login name as typed: lower-cased, then the wire's rule
/// ([`homemx_wire::validate::user_name`]).
pub fn mail_user_name(field: &str, value: &str) -> Result<MailAddress> {
    let name = value.trim().to_ascii_lowercase();
    validate::user_name(&name).map_err(|rule| invalid(field, format!("{value:?}: {rule}")))?;
    bounded(field, &name)
}

/// Longest user password in bytes.
pub const MAX_USER_PASSWORD: usize = homemx_wire::secret::MAX_SECRET_LENGTH;

/// A user's password from a file's bytes: one trailing line end (`\n` or `\r\n`) is
/// removed; what remains must be 1..=[`MAX_USER_PASSWORD`] bytes without NUL, CR or LF (AUTH
/// PLAIN separates its fields with NUL; a line end would be part of no password a mail client
/// sends). The same rule for a password typed at the prompt.
pub fn user_password(bytes: &[u8]) -> std::result::Result<&[u8], &'static str> {
    let password = bytes.strip_suffix(b"\n").map(|line| line.strip_suffix(b"\r").unwrap_or(line)).unwrap_or(bytes);
    if password.is_empty() {
        return Err("the password is empty");
    }
    if password.iter().any(|byte| matches!(byte, b'\0' | b'\r' | b'\n')) {
        return Err("the password holds a NUL or a line break (only one line end at the very end is taken off)");
    }
    if password.len() > MAX_USER_PASSWORD {
        return Err("the password is longer than 128 bytes");
    }
    Ok(password)
}

/// Refuses a file that its group or others may read or write (any of the mode bits 0o077), as
/// ssh refuses such a private key: a password others can read is no longer the user's alone,
/// and the owner should hear of it rather than have it sent. The error says how to fix it.
pub fn check_private(field: &str, path: &Path) -> Result<()> {
    let metadata = std::fs::metadata(path).map_err(|error| invalid(field, format!("cannot read {}: {error}", path.display())))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CliError::new(
            ExitCode::Configuration,
            format!("{field}: {} is readable or writable by others (mode {mode:04o}): a password file must be private", path.display()),
        )
        .hint(format!("run `chmod 600 {}`", path.display())));
    }
    Ok(())
}

/// Reads a user's password file (private, [`user_password`]'s rule) and hashes it with a fresh
/// random salt. The file's bytes are wiped after hashing.
fn user_record(field: &str, base: &Path, path: &Path) -> Result<PasswordRecord> {
    let full = read_relative(base, path);
    check_private(field, &full)?;
    let bytes = zeroize::Zeroizing::new(std::fs::read(&full).map_err(|error| invalid(field, format!("cannot read {}: {error}", full.display())))?);
    let password = user_password(&bytes).map_err(|rule| invalid(field, format!("{}: {rule}", full.display())))?;
    hash_user_password(password).map_err(|message| invalid(field, message))
}

/// A new password record for `password`: PBKDF2-HMAC-SHA256 with
/// [`homemx_credentials::DEFAULT_ITERATIONS`] and 16 random bytes of salt from the OS.
pub fn hash_user_password(password: &[u8]) -> std::result::Result<PasswordRecord, String> {
    let mut salt = [0u8; homemx_credentials::SALT_LENGTH];
    getrandom::fill(&mut salt).map_err(|error| format!("no randomness from the OS for the salt: {error}"))?;
    PasswordRecord::new(password, salt, homemx_credentials::DEFAULT_ITERATIONS).map_err(|problem| problem.to_string())
}

/// What [`plan`] does with the password and certificate files a configuration names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NamedFiles {
    /// Read and check them (provisioning).
    Read,
    /// Leave them alone: they may not exist yet (`homemx init`).
    Skip,
}

fn password(field: &str, base: &Path, path: &Option<PathBuf>, files: NamedFiles) -> Result<Option<Secret>> {
    let Some(path) = path else { return Ok(None) };
    if files == NamedFiles::Skip {
        return Ok(None);
    }
    let full = read_relative(base, path);
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&full).map_err(|error| invalid(field, format!("cannot read {}: {error}", full.display())))?,
    );
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(invalid(field, format!("{} is empty", full.display())));
    }
    Secret::new(line.as_bytes())
        .map(Some)
        .ok_or_else(|| invalid(field, format!("password longer than {} bytes", homemx_wire::secret::MAX_SECRET_LENGTH)))
}

/// The section's trust anchor; `None` only with [`NamedFiles::Skip`] and a file-based anchor.
fn trust_anchor(section: &str, base: &Path, fields: &AnchorFields, files: NamedFiles) -> Result<Option<AnchorValue>> {
    let given = [fields.ca_certificate.is_some(), fields.pin_certificate.is_some(), fields.spki_sha256.is_some()];
    if given.iter().filter(|given| **given).count() != 1 {
        return Err(invalid(
            section,
            "give exactly one trust anchor: ca_certificate, pin_certificate or spki_sha256",
        ));
    }
    if files == NamedFiles::Skip && fields.spki_sha256.is_none() {
        return Ok(None);
    }
    let read = |field: &str, path: &Path| -> Result<Vec<u8>> {
        let full = read_relative(base, path);
        let bytes = std::fs::read(&full).map_err(|error| invalid(field, format!("cannot read {}: {error}", full.display())))?;
        let mut certificates = anchor::certificates(&bytes).map_err(|error| invalid(field, error))?;
        Ok(certificates.remove(0))
    };
    if let Some(path) = &fields.ca_certificate {
        let field = format!("{section}.ca_certificate");
        let der = read(&field, path)?;
        anchor::subject_public_key_info(&der).map_err(|error| invalid(&field, error))?;
        if der.len() > usize::from(u16::MAX) {
            return Err(invalid(&field, "certificate too large"));
        }
        return Ok(Some(AnchorValue::Certificate(der)));
    }
    if let Some(path) = &fields.pin_certificate {
        let field = format!("{section}.pin_certificate");
        let der = read(&field, path)?;
        return anchor::spki_pin(&der).map(|pin| Some(AnchorValue::Pin(pin))).map_err(|error| invalid(&field, error));
    }
    let text = fields.spki_sha256.as_deref().unwrap_or_default();
    let pin = hex::decode(text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| invalid(&format!("{section}.spki_sha256"), "must be 64 hex digits (SHA-256)"))?;
    Ok(Some(AnchorValue::Pin(pin)))
}

/// Parses TOML text; errors name the field and line.
pub fn parse(text: &str) -> Result<ConfigFile> {
    toml::from_str(text).map_err(|error| {
        CliError::new(ExitCode::Configuration, format!("invalid configuration: {error}"))
            .hint("host-tools/cli/homemx.example.toml documents every field")
    })
}

/// Reads and validates `path` into a [`Plan`]; relative file names are taken from its folder.
pub fn load(path: &Path) -> Result<Plan> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        CliError::new(ExitCode::Configuration, format!("cannot read {}: {error}", path.display()))
            .hint("copy host-tools/cli/homemx.example.toml and edit it")
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    plan(&parse(&text)?, base)
}

/// `challenge`: `"http-01"` (the default when absent) or `"tls-alpn-01"`.
pub fn acme_challenge(field: &str, value: Option<&str>) -> Result<AcmeChallenge> {
    match value {
        None | Some("http-01") => Ok(AcmeChallenge::Http01),
        Some("tls-alpn-01") => Ok(AcmeChallenge::TlsAlpn01),
        Some(other) => Err(invalid(field, format!("{other:?} is not \"http-01\" (port 80) or \"tls-alpn-01\" (port 443)"))),
    }
}

/// The host name the device's TLS identity is for, as the device derives it: the `[dyndns]`
/// host name, else `mx.` and the first domain.
fn identity_host_name(file: &ConfigFile) -> Option<String> {
    match &file.dyndns {
        Some(dyndns) => Some(dyndns.host_name.to_ascii_lowercase()),
        None => file.domains.first().map(|domain| format!("mx.{}", domain.to_ascii_lowercase())),
    }
}

/// `[tls.acme]`: the item, the EAB MAC key (a credential) and the ACME server's CA anchor.
fn acme_section(
    file: &ConfigFile,
    acme: &AcmeSection,
    base: &Path,
    files: NamedFiles,
    credentials: &mut Vec<(Credential, Secret)>,
    anchors: &mut Vec<(TlsService, AnchorValue)>,
) -> Result<ConfigItem> {
    validate::acme_directory(&acme.directory).map_err(|rule| invalid("tls.acme.directory", format!("{:?} {rule}", acme.directory)))?;
    let directory = heapless::String::try_from(acme.directory.as_str())
        .map_err(|_| invalid("tls.acme.directory", format!("longer than {MAX_DIRECTORY_URL} bytes")))?;
    let name = host_name("tls.acme.name", &acme.name)?;
    if let Some(expected) = identity_host_name(file) {
        if name.as_str() != expected {
            return Err(invalid(
                "tls.acme.name",
                format!("{name} is not the MX host name {expected} the device's TLS identity is for (the [dyndns] host name, else mx. and the first domain)"),
            ));
        }
    }
    let contact = match &acme.contact {
        Some(address) => {
            let address = address.strip_prefix("mailto:").unwrap_or(address);
            validate::recipient(address).map_err(|problem| invalid("tls.acme.contact", format!("{address:?}: {}", problem.rule())))?;
            Some(bounded("tls.acme.contact", address)?)
        }
        None => None,
    };
    let eab_key_id = match (&acme.eab_key_id, &acme.eab_hmac_key_file) {
        (None, None) => None,
        (Some(key_id), Some(_)) => Some(bounded("tls.acme.eab_key_id", key_id)?),
        _ => return Err(invalid("tls.acme", "External Account Binding needs both eab_key_id and eab_hmac_key_file (or neither)")),
    };
    if let (Some(path), NamedFiles::Read) = (&acme.eab_hmac_key_file, files) {
        let field = "tls.acme.eab_hmac_key_file";
        check_private(field, &read_relative(base, path))?;
        let secret = password(field, base, &acme.eab_hmac_key_file, files)?.ok_or_else(|| invalid(field, "empty"))?;
        let text = secret.expose();
        if text.len() < 16 || !text.iter().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_')) {
            return Err(invalid(field, "the MAC key must be the base64url text the CA gave (at least 16 characters of A-Z a-z 0-9 - _, no padding)"));
        }
        credentials.push((Credential::AcmeEabKey, secret));
    }
    let anchor = AnchorFields { ca_certificate: Some(acme.ca_certificate.clone()), ..AnchorFields::default() };
    if let Some(anchor) = trust_anchor("tls.acme", base, &anchor, files)? {
        anchors.push((TlsService::Acme, anchor));
    }
    Ok(ConfigItem::Acme(Acme {
        directory,
        name,
        contact,
        agree_terms: acme.agree_terms,
        eab_key_id,
        challenge: acme_challenge("tls.acme.challenge", acme.challenge.as_deref())?,
        reuse_key: acme.reuse_key,
    }))
}

/// Validates a parsed file into a [`Plan`], reading the files it names from `base`.
pub fn plan(file: &ConfigFile, base: &Path) -> Result<Plan> {
    plan_with(file, base, NamedFiles::Read)
}

/// Validates every field of a parsed file as [`plan`] does, but leaves the password and
/// certificate files it names unread (they may not exist yet); the trust-anchor rule (exactly
/// one per section) is still checked.
pub fn check_fields(file: &ConfigFile) -> Result<()> {
    plan_with(file, Path::new("."), NamedFiles::Skip).map(|_| ())
}

/// The items of a plan as they are made, each checked with the wire's rules as it is added
/// (the device checks them the same way as they arrive).
struct Items {
    items: Vec<ConfigItem>,
    check: ConfigurationCheck,
}

impl Items {
    /// Adds `item`, refused as the wire's rules refuse it (the field named by them).
    fn push(&mut self, item: ConfigItem) -> Result<()> {
        self.try_push(item).map_err(refused)
    }

    /// Adds `item`, or hands back the wire's refusal for a message of the caller's.
    fn try_push(&mut self, item: ConfigItem) -> std::result::Result<(), Refusal> {
        self.check.add(&item)?;
        self.items.push(item);
        Ok(())
    }
}

fn plan_with(file: &ConfigFile, base: &Path, files: NamedFiles) -> Result<Plan> {
    let mut items = Items { items: Vec::new(), check: ConfigurationCheck::new() };
    let mut credentials = Vec::new();
    let mut anchors = Vec::new();
    let mut domains = Vec::new();
    for (index, domain) in file.domains.iter().enumerate() {
        let name = host_name(&format!("domains[{index}]"), domain)?;
        domains.push(name.to_string());
        items.push(ConfigItem::Domain(name))?;
    }
    for (index, address) in file.recipients.iter().enumerate() {
        items.push(ConfigItem::Recipient(recipient(&format!("recipients[{index}]"), address, &domains)?))?;
    }
    for (index, prefix) in file.lan_prefixes.iter().enumerate() {
        items.push(ConfigItem::LanPrefix(lan_prefix(&format!("lan_prefixes[{index}]"), prefix)?))?;
    }
    let mailbox = &file.lan_mailbox;
    let protocol = delivery_protocol("lan_mailbox.protocol", &mailbox.protocol)?;
    items.push(ConfigItem::LanMailbox(LanMailbox {
        address: ipv4("lan_mailbox.address", &mailbox.address)?,
        port: port("lan_mailbox.port", mailbox.port)?,
        protocol,
    }))?;
    if let Some(smarthost) = &file.smarthost {
        items.push(ConfigItem::Smarthost(Smarthost {
            host: host_name("smarthost.host", &smarthost.host)?,
            port: port("smarthost.port", smarthost.port)?,
            tls: tls("smarthost.tls", &smarthost.tls)?,
            user_name: user_name("smarthost.user_name", &smarthost.user_name)?,
            min_tls: min_tls("smarthost.min_tls", smarthost.anchor.min_tls.as_deref())?,
        }))?;
        if let Some(secret) = password("smarthost.password_file", base, &smarthost.password_file, files)? {
            credentials.push((Credential::SmarthostPassword, secret));
        }
        if let Some(anchor) = trust_anchor("smarthost", base, &smarthost.anchor, files)? {
            anchors.push((TlsService::Smarthost, anchor));
        }
    }
    if let Some(backup) = &file.backup_mx {
        items.push(ConfigItem::BackupMx(BackupMx {
            host: host_name("backup_mx.host", &backup.host)?,
            port: port("backup_mx.port", backup.port)?,
            tls: tls("backup_mx.tls", &backup.tls)?,
            user_name: user_name("backup_mx.user_name", &backup.user_name)?,
            poll_interval_seconds: backup.poll_interval_seconds,
            min_tls: min_tls("backup_mx.min_tls", backup.anchor.min_tls.as_deref())?,
        }))?;
        if let Some(secret) = password("backup_mx.password_file", base, &backup.password_file, files)? {
            credentials.push((Credential::BackupMxPassword, secret));
        }
        if let Some(anchor) = trust_anchor("backup_mx", base, &backup.anchor, files)? {
            anchors.push((TlsService::BackupMx, anchor));
        }
    }
    if let Some(dyndns) = &file.dyndns {
        items.push(ConfigItem::DynDns(DynDns {
            server: host_name("dyndns.server", &dyndns.server)?,
            host_name: host_name("dyndns.host_name", &dyndns.host_name)?,
            user_name: user_name("dyndns.user_name", &dyndns.user_name)?,
            check_interval_seconds: dyndns.check_interval_seconds,
            min_tls: min_tls("dyndns.min_tls", dyndns.anchor.min_tls.as_deref())?,
        }))?;
        let mut hosts: Vec<HostName> = Vec::new();
        for (index, url) in dyndns.check_ip.iter().enumerate() {
            let field = format!("dyndns.check_ip[{index}]");
            let rest = url.strip_prefix("https://").ok_or_else(|| invalid(&field, "must be an https:// URL (never clear text)"))?;
            let (host, path) = match rest.find('/') {
                Some(slash) => (&rest[..slash], &rest[slash..]),
                None => (rest, "/"),
            };
            let path = heapless::String::try_from(path).map_err(|_| invalid(&field, format!("path longer than {MAX_URL_PATH} bytes")))?;
            let host = host_name(&field, host.strip_suffix('.').unwrap_or(host))?;
            items.try_push(ConfigItem::CheckIpSource(CheckIpSource { host: host.clone(), path })).map_err(|refusal| {
                match hosts.iter().position(|earlier| *earlier == host) {
                    Some(earlier) => invalid(
                        &field,
                        format!("host {host} is already dyndns.check_ip[{earlier}]: one service asked twice is one witness, not two agreeing sources"),
                    )
                    .hint(CHECK_IP_HINT),
                    None if index >= MAX_CHECK_IP_SOURCES => invalid(refusal.field, refusal.rule),
                    None => invalid(&field, refusal.rule),
                }
            })?;
            hosts.push(host);
        }
        if let Some(secret) = password("dyndns.password_file", base, &dyndns.password_file, files)? {
            credentials.push((Credential::DynDnsPassword, secret));
        }
        if let Some(anchor) = trust_anchor("dyndns", base, &dyndns.anchor, files)? {
            anchors.push((TlsService::DynDns, anchor));
        }
    }
    let limits = &file.limits;
    items.push(ConfigItem::Limits(Limits {
        max_message_bytes: limits.max_message_bytes,
        max_recipients: limits.max_recipients,
        messages_per_client_per_hour: limits.messages_per_client_per_hour,
        spool_reserve_bytes: limits.spool_reserve_bytes,
    }))?;
    for (index, server) in file.time_servers.iter().enumerate() {
        items.push(ConfigItem::TimeServer(host_name(&format!("time_servers[{index}]"), server)?))?;
    }
    let page = &file.status_page;
    items.push(ConfigItem::StatusPage(StatusPage {
        enabled: page.enabled,
        port: port("status_page.port", page.port)?,
        host_name: host_name("status_page.host_name", &page.host_name)?,
    }))?;
    let mut acme_warnings = Vec::new();
    if let Some(acme) = &file.tls.acme {
        let item = acme_section(file, acme, base, files, &mut credentials, &mut anchors)?;
        items.push(item)?;
        if !acme.agree_terms {
            acme_warnings.push("[tls.acme] agree_terms = false: a CA with terms of service (Let's Encrypt has them) refuses the account until you agree".to_string());
        }
        if !acme.reuse_key {
            acme_warnings.push("[tls.acme] reuse_key = false: every renewal brings a new key, so a `3 1 1` TLSA record breaks at each renewal (publish `2 1 1` for the issuer instead, `homemx tls tlsa --issuer`)".to_string());
        }
    }
    items.check.finish().map_err(|refusal| match refusal.field {
        "dyndns.check_ip" => {
            let given = file.dyndns.as_ref().map_or(0, |dyndns| dyndns.check_ip.len());
            invalid(
                refusal.field,
                format!(
                    "{given} check-IP service{} given, at least {MIN_CHECK_IP_SOURCES} on distinct hosts are needed: the device learns its public address only when two agree, so with fewer the DynDNS record is never updated",
                    if given == 1 { "" } else { "s" }
                ),
            )
            .hint(CHECK_IP_HINT)
        }
        "lan_prefixes" => invalid(refusal.field, "at least one LAN network is needed (e.g. \"192.168.1.0/24\")"),
        _ => refused(refusal),
    })?;
    let mut warnings = users_and_submission(file, base, files, &mut items)?;
    warnings.extend(acme_warnings);
    Ok(Plan { items: items.items, credentials, anchors, warnings })
}

/// The submission policy and the `[[users]]` (after the domains, which their names need).
fn users_and_submission(file: &ConfigFile, base: &Path, files: NamedFiles, items: &mut Items) -> Result<Vec<String>> {
    items.push(ConfigItem::Submission(Submission {
        requires_auth: file.submission_requires_auth,
        lan_relay_without_auth: file.lan_relay_without_auth,
    }))?;
    let mut names: Vec<String> = Vec::new();
    for (index, user) in file.users.iter().enumerate() {
        let field = format!("users[{index}]");
        let name = mail_user_name(&format!("{field}.name"), &user.name)?;
        let password = match files {
            NamedFiles::Read => user_record(&format!("{field}.password_file"), base, &user.password_file)?,
            // Not sent: `homemx init` checks the fields before the password files exist.
            NamedFiles::Skip => PasswordRecord { algorithm: homemx_credentials::ALGORITHM_PBKDF2_HMAC_SHA256, iterations: homemx_credentials::DEFAULT_ITERATIONS, salt: [0; 16], hash: [0; 32] },
        };
        let item = ConfigItem::User(MailUser { name: name.clone(), password, messages_per_hour: user.messages_per_hour });
        items.try_push(item).map_err(|refusal| match names.iter().position(|earlier| earlier == name.as_str()) {
            Some(earlier) => invalid(&format!("{field}.name"), format!("{name} is already users[{earlier}]: each user once"))
                .hint(format!("remove one entry, or change the password with `homemx user passwd {name}`")),
            None if refusal.field == "users" => invalid("users", refusal.rule),
            None => invalid(&format!("{field}.{}", refusal.field.trim_start_matches("users.")), refusal.rule),
        })?;
        names.push(name.to_string());
    }
    let mut warnings = Vec::new();
    if file.lan_relay_without_auth {
        warnings.push(
            "lan_relay_without_auth = true: LAN clients relay by their address alone, without AUTH; any device on the LAN, a compromised one included, can then send mail as anyone".to_string(),
        );
    }
    if file.smarthost.is_some() && file.submission_requires_auth && !file.lan_relay_without_auth && file.users.is_empty() {
        warnings.push(
            "no [[users]]: with submission_requires_auth = true nobody can send mail to other domains; add one with `homemx user add NAME@DOMAIN`".to_string(),
        );
    }
    Ok(warnings)
}
