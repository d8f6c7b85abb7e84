//! The messages: [`Command`]s from the owner's host, [`Response`]s from the device.
//!
//! A command may carry a [`Secret`]; no response can: [`Response`] and everything inside it is
//! built from types that have no secret field, and [`Secret`] cannot even be serialized in the
//! firmware build (see [`crate::secret`]).

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigItem, HostName};
use crate::secret::Secret;
use crate::{Challenge, DeviceIdentity};

/// An ed25519 public key (the admin key), 32 bytes.
pub type PublicKey = [u8; 32];

/// Bytes of certificate in one `SetTrustAnchor` chunk.
pub const MAX_CERTIFICATE_CHUNK: usize = 512;
/// Bytes of a certificate request (DER) in a `CertificateRequest` answer: a request for the
/// longest host name (253 bytes, in the SubjectAltName only) is about 520 bytes.
pub const MAX_CERTIFICATE_REQUEST: usize = 640;
/// Bytes of PEM text in one `TlsInstall` chunk.
pub const MAX_CHAIN_CHUNK: usize = 512;
/// The longest certificate chain (PEM text) `homemx tls install` sends.
pub const MAX_CHAIN_PEM: usize = 8 * 1024;
/// Longest name of a certificate's subject or issuer in a status (bytes; longer ones are cut).
pub const MAX_CERTIFICATE_NAME: usize = 64;
/// Log entries in one page.
pub const MAX_LOG_ENTRIES: usize = 6;
/// Longest log text in bytes.
pub const MAX_LOG_TEXT: usize = 100;
/// Most alerts in one status (the device's alert board holds as many).
pub const MAX_ALERTS: usize = 8;
/// Longest alert kind name in bytes.
pub const MAX_ALERT_NAME: usize = 32;

/// An alert kind's stable machine name, as on the status page and in `/status.json`
/// (`stripping_suspected`, `certificate_rejected`, …).
pub type AlertName = String<MAX_ALERT_NAME>;

/// An ed25519 signature as its two 32-byte halves (serde has no 64-byte arrays).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureBytes {
    /// The R half.
    pub r: [u8; 32],
    /// The S half.
    pub s: [u8; 32],
}

impl SignatureBytes {
    /// From the 64 bytes of an ed25519 signature.
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        let mut r = [0; 32];
        let mut s = [0; 32];
        r.copy_from_slice(&bytes[..32]);
        s.copy_from_slice(&bytes[32..]);
        Self { r, s }
    }

    /// The 64 bytes of the signature.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut bytes = [0; 64];
        bytes[..32].copy_from_slice(&self.r);
        bytes[32..].copy_from_slice(&self.s);
        bytes
    }
}

/// A command from the owner's host. Only [`Command::Hello`] may be sent unsigned.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "client", derive(Serialize))]
pub enum Command {
    /// Who are you? Answered with [`Response::DeviceInfo`] and the current challenge.
    Hello,
    /// Enrol the admin key on a factory-fresh device (trust on first use over the physical
    /// link). The frame must be signed by this very key (proof of possession).
    Enrol {
        /// The admin public key.
        admin_key: PublicKey,
    },
    /// The device's status (no secrets in it).
    Status,
    /// Unlock storage with the passphrase. On a device that has no data key yet, the first
    /// unlock creates it, wrapped under this passphrase.
    Unlock {
        /// The passphrase.
        passphrase: Secret,
    },
    /// Wipe key material from RAM; storage stays unreadable until the next unlock.
    Lock,
    /// Start replacing the whole configuration; items follow.
    ConfigBegin,
    /// One item of the configuration being replaced.
    ConfigPut(ConfigItem),
    /// Make the staged configuration current, if it has exactly this many items.
    ConfigCommit {
        /// The number of items sent since `ConfigBegin`.
        item_count: u16,
    },
    /// Read item `index` of the current configuration.
    ConfigGet {
        /// Index from 0.
        index: u16,
    },
    /// Set a write-only credential.
    SetCredential {
        /// Which one.
        credential: Credential,
        /// Its value; never returned by any command.
        secret: Secret,
    },
    /// Set (part of) the trust anchor for a provider's TLS service.
    SetTrustAnchor(TrustAnchorUpdate),
    /// Read log entries from sequence number `start` on.
    Logs {
        /// The first sequence number wanted (0: the oldest kept).
        start: u32,
        /// At most this many entries (the device caps it at [`MAX_LOG_ENTRIES`]).
        max_entries: u8,
    },
    /// Replace the admin key. Signed by the current key; `proof` is the new key's signature
    /// over the rotation message (see [`crate::signing::rotation_message`]).
    RotateAdminKey {
        /// The new admin public key.
        new_key: PublicKey,
        /// The new key's signature proving its holder asked for it.
        proof: SignatureBytes,
    },
    /// Destroy the wrapped data key (the flash contents become unreadable), the configuration,
    /// the credentials and the admin key: the device is factory-fresh afterwards.
    FactoryReset,
    /// Fetch from the backup MX now instead of waiting for the poll interval.
    FetchNow,
    /// Try every queued message now instead of at its retry time (`postqueue -f`).
    FlushQueue,
    /// Resume DynDNS updates stopped by a fatal answer (after the owner fixed the account).
    DynDnsResume,
    /// End an active alert that only the owner can end (one about an event, such as a bounced
    /// message or a failed unlock). Alerts about conditions end by themselves when the cause is
    /// gone and are refused with [`ErrorCode::NotAcknowledgeable`].
    AcknowledgeAlert {
        /// The alert kind's machine name.
        kind: AlertName,
    },
    /// The device's certificate request (PKCS#10, signed on the device with its TLS key) for
    /// its configured host name, to take to a CA. Answered with [`Response::CertificateRequest`].
    TlsCertificateRequest,
    /// One in-order chunk of a CA-issued certificate chain (PEM, leaf first) for the device's
    /// TLS key. With the last chunk the device checks the whole chain (its key, its host name,
    /// the dates, each link's signature, the path rules) and installs it, or refuses it with
    /// [`ErrorCode::CertificateRefused`] and keeps the certificate it had.
    TlsInstall(ChainChunk),
    /// The device's own TLS certificate: subject, issuer, expiry. Answered with
    /// [`Response::Certificate`]. (Not a field of [`Status`]: the largest status already fills
    /// most of a frame.)
    TlsStatus,
    /// Obtain a certificate from the `[tls.acme]` CA now instead of at the renewal time
    /// (`homemx tls renew`). The run's progress and result go to the event log.
    TlsRenew,
}

/// Part of a certificate chain's PEM text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainChunk {
    /// The whole chain's length in bytes (at most [`MAX_CHAIN_PEM`]).
    pub total_length: u16,
    /// Where this chunk starts (0 starts a new upload).
    pub offset: u16,
    /// The chunk.
    pub bytes: Vec<u8, MAX_CHAIN_CHUNK>,
}

/// Why a certificate chain was not installed (homemx-tls's checks, in wire form); `index` 0 is
/// the leaf, 1 its issuer, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CertificateRefusal {
    /// Nothing but white space.
    Empty,
    /// Not PEM text, or broken base64.
    NotPem,
    /// No CERTIFICATE block.
    NoCertificate,
    /// A block other than CERTIFICATE (a private key, a request …).
    UnexpectedBlock,
    /// Too many certificates, or longer than the device stores.
    TooLong,
    /// Certificate `index` is not readable X.509.
    Malformed {
        /// Which certificate.
        index: u8,
    },
    /// Only the leaf: its issuer's certificate must follow.
    IssuerMissing,
    /// The leaf is not for the device's key.
    WrongKey,
    /// The leaf is not valid for the device's host name.
    WrongName,
    /// Certificate `index` is not valid yet.
    NotYetValid {
        /// Which certificate.
        index: u8,
        /// Its notBefore, Unix seconds.
        not_before: u64,
    },
    /// Certificate `index` has expired.
    Expired {
        /// Which certificate.
        index: u8,
        /// Its notAfter, Unix seconds.
        not_after: u64,
    },
    /// Certificate `index` was not issued by certificate `index + 1`.
    WrongIssuer {
        /// Which certificate.
        index: u8,
    },
    /// Certificate `index`'s signature does not verify with the next one's key.
    BadSignature {
        /// Which certificate.
        index: u8,
    },
    /// The leaf's extendedKeyUsage has no serverAuth.
    NotForServers,
    /// RFC 5280 path validation refused it (an issuer that is not a CA, a path length or name
    /// constraint; the device's log names the rule).
    PathRefused,
}


impl Command {
    /// The command's name for logs and messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Hello => "hello",
            Command::Enrol { .. } => "enrol",
            Command::Status => "status",
            Command::Unlock { .. } => "unlock",
            Command::Lock => "lock",
            Command::ConfigBegin => "config-begin",
            Command::ConfigPut(_) => "config-put",
            Command::ConfigCommit { .. } => "config-commit",
            Command::ConfigGet { .. } => "config-get",
            Command::SetCredential { .. } => "set-credential",
            Command::SetTrustAnchor(_) => "set-trust-anchor",
            Command::Logs { .. } => "logs",
            Command::RotateAdminKey { .. } => "rotate-admin-key",
            Command::FactoryReset => "factory-reset",
            Command::FetchNow => "fetch-now",
            Command::FlushQueue => "flush-queue",
            Command::DynDnsResume => "dyndns-resume",
            Command::AcknowledgeAlert { .. } => "alert-ack",
            Command::TlsCertificateRequest => "tls-csr",
            Command::TlsInstall(_) => "tls-install",
            Command::TlsStatus => "tls-status",
            Command::TlsRenew => "tls-renew",
        }
    }
}

/// The write-only credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credential {
    /// The smarthost AUTH password.
    SmarthostPassword,
    /// The backup MX POP3 password.
    BackupMxPassword,
    /// The DynDNS account password.
    DynDnsPassword,
    /// The ACME External Account Binding MAC key (base64url, as the CA hands it out).
    AcmeEabKey,
}

/// The provider services whose TLS certificates the device verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsService {
    /// The smarthost.
    Smarthost,
    /// The backup MX (POP3).
    BackupMx,
    /// The DynDNS update server.
    DynDns,
    /// The ACME server (`[tls.acme]`).
    Acme,
}

/// A trust anchor, whole or in part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustAnchorUpdate {
    /// The service it is for.
    pub service: TlsService,
    /// The anchor.
    pub anchor: TrustAnchor,
}

/// A CA certificate (in chunks) or a pinned key.
// No allocator, so no boxing: the variants' size difference is the price of a fixed bound.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrustAnchor {
    /// SHA-256 of the server's SubjectPublicKeyInfo (DER): only that key is accepted.
    SpkiSha256([u8; 32]),
    /// Part of a CA certificate in DER. Chunks come in order; the anchor takes effect when
    /// `offset + bytes.len() == total_length`.
    CertificateChunk {
        /// The whole certificate's length in bytes.
        total_length: u16,
        /// Where this chunk starts.
        offset: u16,
        /// The chunk.
        bytes: Vec<u8, MAX_CERTIFICATE_CHUNK>,
    },
}

/// The device's lock state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceState {
    /// No admin key enrolled yet: the next `Enrol` decides who owns the device.
    FactoryFresh,
    /// Enrolled; storage keys are not in RAM.
    Locked,
    /// Enrolled and unlocked: mail flows.
    Unlocked,
}

/// Who the device is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The protocol version the device speaks.
    pub protocol_version: u8,
    /// The device identity signed into every command.
    pub identity: DeviceIdentity,
    /// Firmware version string.
    pub firmware_version: String<32>,
    /// Board name.
    pub board: String<32>,
    /// Lock state.
    pub state: DeviceState,
}

/// Which credentials are set (never their values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsPresent {
    /// Smarthost password set.
    pub smarthost_password: bool,
    /// Backup MX password set.
    pub backup_mx_password: bool,
    /// DynDNS password set.
    pub dyndns_password: bool,
}

/// An active alert, as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertReport {
    /// The kind's stable machine name.
    pub kind: AlertName,
    /// How often it was raised since it became active.
    pub count: u32,
    /// Seconds since it was first raised (since it last became active).
    pub first_seen_age_seconds: u32,
    /// When it was first raised (Unix seconds), if the device's clock was known.
    pub first_seen_unix: Option<u64>,
    /// Seconds since it was last raised.
    pub last_seen_age_seconds: u32,
    /// Only the owner ends it (`homemx alert ack KIND`); otherwise it ends when the cause is gone.
    pub needs_acknowledgement: bool,
}

/// Longest headline (bytes): the status page's verdict line.
pub const MAX_HEADLINE: usize = 160;
/// Longest verdict machine name (bytes).
pub const MAX_VERDICT_NAME: usize = 24;

/// The device's status. Has no field that could hold a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The status page's verdict as a machine name (`ok`, `mailbox_unreachable`, …; as in
    /// `/status.json`).
    pub verdict: String<MAX_VERDICT_NAME>,
    /// The status page's headline in words, the other problems after ` · `.
    pub headline: String<MAX_HEADLINE>,
    /// Lock state.
    pub state: DeviceState,
    /// Seconds since boot.
    pub uptime_seconds: u32,
    /// Failed unlock attempts since the last successful one (survives reset).
    pub failed_unlocks: u16,
    /// Seconds before another unlock attempt is accepted (0: now).
    pub unlock_retry_after_seconds: u32,
    /// Whether a configuration has been committed.
    pub configured: bool,
    /// Which credentials are set.
    pub credentials: CredentialsPresent,
    /// The line's public IPv4 address, when known.
    pub public_address: Option<[u8; 4]>,
    /// The DynDNS host name, when configured.
    pub dyndns_host_name: Option<HostName>,
    /// Messages in the spool.
    pub spool_messages: u32,
    /// Free spool bytes.
    pub spool_free_bytes: u32,
    /// Spool size in bytes (0 while locked).
    pub spool_total_bytes: u32,
    /// Of the messages in the spool, those whose delivery failed at least once and wait for
    /// a retry.
    pub deferred: u32,
    /// Age of the oldest message in the spool in seconds (`None`: none, or the time is unknown).
    pub oldest_queued_age_seconds: Option<u32>,
    /// Messages accepted since boot (SMTP and the backup MX fetch).
    pub received: u32,
    /// Messages delivered since boot (to the LAN mailbox host or the smarthost).
    pub delivered: u32,
    /// Recipients given up on since boot (non-delivery notice sent).
    pub bounced: u32,
    /// The active alerts, oldest first.
    pub alerts: Vec<AlertReport, MAX_ALERTS>,
    /// Alerts dropped since boot because the alert board was full.
    pub alerts_dropped: u32,
}

/// The device's own TLS certificate as `homemx status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateReport {
    /// The subject's commonName (cut at [`MAX_CERTIFICATE_NAME`] bytes).
    pub subject: Option<String<MAX_CERTIFICATE_NAME>>,
    /// The issuer's commonName.
    pub issuer: Option<String<MAX_CERTIFICATE_NAME>>,
    /// Made and signed by the device (no CA chain installed).
    pub self_signed: bool,
    /// notAfter, Unix seconds.
    pub not_after_unix: u64,
    /// Whole days until notAfter (negative once expired); `None` while the clock is not set.
    pub days_until_expiry: Option<i32>,
    /// The host name the certificate is for (the configured MX host name: the DynDNS name, or
    /// `mx.<first domain>`): the owner of its DANE TLSA record is `_25._tcp.<host_name>`.
    pub host_name: String<{ crate::validate::MAX_HOST_NAME_LENGTH }>,
    /// SHA-256 of the certificate's SubjectPublicKeyInfo (the key in use): the data of a
    /// `3 1 1` TLSA record.
    pub key_sha256: [u8; 32],
    /// SHA-256 of the issuing CA's SubjectPublicKeyInfo (the installed chain's second
    /// certificate; `None` for the self-signed certificate): the data of a `2 1 1` TLSA record.
    pub issuer_key_sha256: Option<[u8; 32]>,
}

/// How serious a log entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogLevel {
    /// Routine.
    Info,
    /// Worth a look.
    Warning,
    /// Needs the owner.
    Alarm,
}

/// One log entry. The device never writes a secret into one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Sequence number, increasing, survives reset.
    pub sequence: u32,
    /// Seconds since boot when it happened.
    pub uptime_seconds: u32,
    /// Level.
    pub level: LogLevel,
    /// Text.
    pub text: String<MAX_LOG_TEXT>,
}

/// A page of log entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    /// The entries, oldest first.
    pub entries: Vec<LogEntry, MAX_LOG_ENTRIES>,
    /// The sequence number to ask for next.
    pub next: u32,
    /// True when entries from `next` on exist.
    pub more: bool,
}

/// Why a request was refused. Every refusal leaves the device as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The request's protocol version is not the device's.
    UnsupportedVersion {
        /// The version the device speaks.
        device_version: u8,
    },
    /// The frame exceeded the maximum length.
    FrameTooLong,
    /// The frame was not valid COBS or too short.
    MalformedFrame,
    /// The frame's CRC-32 did not match.
    BadChecksum,
    /// The frame's header was not understood (unknown authentication kind).
    MalformedHeader,
    /// The command could not be decoded (unknown command or bad field).
    UndecodableCommand,
    /// This command must be signed.
    SignatureRequired,
    /// No admin key is enrolled: provision the device first.
    NotEnrolled,
    /// An admin key is enrolled already; only a factory reset allows another enrolment.
    AlreadyEnrolled,
    /// The frame names another device.
    WrongDevice,
    /// The frame was signed over a challenge that is not the current one (replayed or stale).
    StaleChallenge,
    /// The signature does not verify with the enrolled admin key.
    BadSignature,
    /// Storage is locked: unlock first.
    Locked,
    /// The passphrase did not unlock storage.
    WrongPassphrase,
    /// Too many failed unlocks: wait this long.
    RateLimited {
        /// Seconds to wait.
        retry_after_seconds: u32,
    },
    /// A configuration item, a whole configuration (see [`crate::validate`]) or a value (an
    /// overlong credential, an empty passphrase) was refused.
    InvalidConfiguration,
    /// `ConfigPut`/`ConfigCommit` without `ConfigBegin`, or the item count did not match.
    ConfigurationSequence,
    /// A certificate chunk came out of order or the certificate is too large.
    ChunkOutOfOrder,
    /// Nothing at that index.
    NotFound,
    /// Flash is full.
    StorageFull,
    /// The device cannot do that (not implemented on this board).
    Unsupported,
    /// An internal error on the device (flash failure); nothing was changed.
    DeviceFault,
    /// That alert ends by itself when its cause is gone; it cannot be acknowledged away.
    NotAcknowledgeable,
    /// The device's clock is not set yet (SNTP): certificate dates cannot be checked.
    TimeUnknown,
    /// A certificate chain was refused (the device keeps the certificate it had).
    CertificateRefused(CertificateRefusal),
    /// The chip could erase its RAM at every reset (option bytes) but is not set to: the
    /// device refuses to unlock until it is.
    RamWipeNotSet,
    /// The tamper loop is open (case or door open): the device stays locked until it is closed.
    TamperLoopOpen,
    /// The key store is bound to another chip (its flash was copied or moved from another
    /// board): it can never be opened on this one.
    OtherChip,
}

impl ErrorCode {
    /// A sentence for people saying what went wrong and what to do.
    pub fn explain(&self) -> &'static str {
        match self {
            ErrorCode::UnsupportedVersion { .. } => {
                "the device speaks another protocol version: use a CLI that matches its firmware"
            }
            ErrorCode::FrameTooLong => "the request was longer than the device accepts",
            ErrorCode::MalformedFrame => "the device received a damaged frame: check the cable and retry",
            ErrorCode::BadChecksum => "the device received a frame with a bad checksum: check the cable and retry",
            ErrorCode::MalformedHeader => "the device did not understand the request header",
            ErrorCode::UndecodableCommand => "the device did not understand the command: is the firmware older than the CLI?",
            ErrorCode::SignatureRequired => "this command must be signed with the admin key",
            ErrorCode::NotEnrolled => "the device has no admin key yet: run `homemx provision` first",
            ErrorCode::AlreadyEnrolled => {
                "the device already has an admin key: use that key, or factory-reset the device"
            }
            ErrorCode::WrongDevice => "the request was made for another device",
            ErrorCode::StaleChallenge => "the request was signed over an old challenge (replayed?): retry",
            ErrorCode::BadSignature => {
                "the signature does not verify: this is not the admin key enrolled on the device"
            }
            ErrorCode::Locked => "storage is locked: run `homemx unlock` first",
            ErrorCode::WrongPassphrase => "wrong passphrase",
            ErrorCode::RateLimited { .. } => "too many failed unlocks: wait before trying again",
            ErrorCode::InvalidConfiguration => "the device refused a configuration item or value (a configuration rule broken: `homemx logs` names the field; the configuration in force is unchanged)",
            ErrorCode::ConfigurationSequence => "configuration items out of sequence: run the command again",
            ErrorCode::ChunkOutOfOrder => "certificate chunks out of order or certificate too large",
            ErrorCode::NotFound => "nothing there",
            ErrorCode::StorageFull => "the device's flash is full",
            ErrorCode::Unsupported => "the device does not support this",
            ErrorCode::DeviceFault => "the device hit an internal error; nothing was changed",
            ErrorCode::NotAcknowledgeable => {
                "that alert ends by itself once its cause is gone (for example a verified connection to that peer); fix the cause"
            }
            ErrorCode::TimeUnknown => {
                "the device's clock is not set yet (no SNTP answer): check the time server setting and retry in a minute"
            }
            ErrorCode::CertificateRefused(_) => "the device refused the certificate chain and keeps its current certificate",
            ErrorCode::RamWipeNotSet => {
                "the chip is not set to erase its RAM at reset, so the device will not unlock: run `cargo xtask provision-board` with the probe attached, then reset"
            }
            ErrorCode::TamperLoopOpen => {
                "the tamper loop is open (case or door contact): the device stays locked; close the loop first, then unlock and `homemx alert ack tamper`"
            }
            ErrorCode::OtherChip => {
                "the key store on this flash was sealed on another chip (copied or moved from another board) and can never be opened here: deliver the mail on the old board (`homemx flush`), or factory-reset this one (what the flash holds is lost)"
            }
        }
    }
}

/// A response body.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to `Hello`.
    DeviceInfo(DeviceInfo),
    /// The command was carried out.
    Done,
    /// Answer to `Status`.
    Status(Status),
    /// Answer to `ConfigGet`.
    ConfigItem {
        /// Its index.
        index: u16,
        /// Number of items in the configuration.
        total: u16,
        /// The item.
        item: ConfigItem,
    },
    /// Answer to `Logs`.
    Logs(LogPage),
    /// The request was refused; nothing changed.
    Error(ErrorCode),
    /// Answer to `TlsCertificateRequest`: the request in DER.
    CertificateRequest(Vec<u8, MAX_CERTIFICATE_REQUEST>),
    /// Answer to `TlsStatus` (`None`: locked, unconfigured, or not made yet: the self-signed
    /// certificate is made once the clock is set).
    Certificate(Option<CertificateReport>),
}

/// Everything in a response frame after the version byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    /// The challenge the next signed command must be signed over.
    pub challenge: Challenge,
    /// The body.
    pub body: Response,
}
