//! The device's TLS identity in the vault (homemx-tls's `identity` does the cryptography): its
//! P-256 key, generated on the device from the vault's random stream the first time the device
//! is unlocked with a configuration, stored as its 32-byte scalar in the encrypted key-value
//! store and never sent anywhere; and the certificate chain it presents, also in the store:
//! a self-signed certificate for the configured host name, or the CA-issued chain the owner
//! installed (`homemx tls install`) after homemx-tls's `check_chain` took it.
//!
//! - **Time.** A certificate needs the wall clock (SNTP). Until the clock is set the key is made
//!   but no certificate: the self-signed one is made at the first refresh after the clock is set
//!   (the courier's job), and an install is refused with `TimeUnknown`.
//! - **Renewal.** The self-signed certificate is made again when the host name changes or 30
//!   days before it expires. A CA-issued chain stays until the owner replaces it, except when
//!   the host name changes (it is then for another name: a self-signed one replaces it). The
//!   `certificate_expiring` alert is raised 21 days before the certificate in use expires; for
//!   a CA-issued chain while `[tls.acme]` is configured (ACME renews it) 14 days before, or a
//!   quarter of its lifetime if that is shorter (`CertificateSummary::acme_alert_lead`). The
//!   alert is looked at again whenever a chain is published, and by [`check_expiry_alert`]
//!   (the ACME run calls it at each of the courier's passes, every few seconds); it ends
//!   when a chain that is not due is published.
//! - **Flash, not RAM.** The chain (388 B self-signed, a few KB from a CA) lives in the store in
//!   256-byte records, under one of two slots: the new chain is written to the other slot and a
//!   header record (slot, kind, length, SHA-256 of the host name) switches to it in one write,
//!   so a power cut or a refusal leaves the old chain in force. RAM keeps only the summary
//!   (subject, issuer, expiry: about 150 B) the status page reads; the TLS listener loads the
//!   chain when it builds its configuration. Regenerating at each boot instead would save the
//!   flash records but change the certificate (serial, dates) at every boot.
//!
//! Owns: the published certificate summary (`CERTIFICATE`) and when its expiry alert is due
//! (`EXPIRY_ALERT`). Calls: `alerts`, `event_log`, `mail_settings`, `wall_clock`.

use alloc::vec::Vec;
use core::cell::RefCell;
use core::sync::atomic::{AtomicU32, Ordering};

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use homemx_keystore::secret::SecretBytes;
use homemx_spool::KEY_VALUE_CAPACITY;
use homemx_status::alert::AlertKind;
use homemx_status::DeviceCertificate;
use homemx_dyndns::dane::KeyDigests;
use homemx_tls::identity::{self, CertificateSummary, DeviceKey, HostName, InstallError, STORED_KEY_LENGTH};
use homemx_wire::message::{CertificateRefusal, ChainChunk, ErrorCode, MAX_CERTIFICATE_REQUEST, MAX_CHAIN_PEM};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use super::Settings;

/// The most DER the stored chain may hold (24 records of 256 bytes).
pub const MAX_CHAIN_DER: usize = 6 * 1024;
/// The self-signed certificate is made again this many days before it expires (before the
/// 21-day alert would fire).
const SELF_SIGNED_RENEWAL_DAYS: i64 = 30;
/// A new self-signed certificate is valid from this long before now (peers whose clocks lag).
const BACKDATE_SECONDS: u64 = 3600;
/// The header record: slot, kind (with [`KEY_IN_SLOT`]), length (LE), SHA-256 of the host name.
const HEADER_LENGTH: usize = 4 + 32;
/// In the header's kind octet: the chain's key is the slot's own record ([`slot_key_record`]),
/// not the identity's key (an ACME certificate with `reuse_key = false`). Key and chain then
/// switch with the one header write, so a power cut cannot pair one's key with the other's chain.
const KEY_IN_SLOT: u8 = 0x80;

const SELF_SIGNED: u8 = 1;
const CA_ISSUED: u8 = 2;

/// Counts changes of the identity (a different chain published, or forgotten at lock): the
/// TLS listener rebuilds its configuration when it differs from the one it was built at.
static GENERATION: AtomicU32 = AtomicU32::new(0);

/// The first 4 octets of the SHA-256 of the chain last published (0: none since the last
/// forget), so that the hourly refresh, which publishes the same chain again, does not make
/// the listener rebuild its configuration (a key load and about 11 M instructions) every hour.
static PUBLISHED_CHAIN: AtomicU32 = AtomicU32::new(0);

/// [`PUBLISHED_CHAIN`]'s value for `chain`.
fn chain_fingerprint(chain: Option<&[u8]>) -> u32 {
    use sha2::{Digest, Sha256};
    chain.map_or(0, |chain| {
        let digest = Sha256::digest(chain);
        u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) | 1
    })
}

/// The identity's generation (see `GENERATION`).
pub fn generation() -> u32 {
    GENERATION.load(Ordering::Acquire)
}

/// The summary of the certificate in use, for the status page and `homemx status`.
static CERTIFICATE: Mutex<CriticalSectionRawMutex, RefCell<Option<DeviceCertificate>>> = Mutex::new(RefCell::new(None));

/// The SPKI digests of the certificate in use and of its issuer (64 B): what `homemx tls tlsa`
/// prints and the DNS guard compares the published TLSA records with.
static KEY_DIGESTS: Mutex<CriticalSectionRawMutex, RefCell<Option<KeyDigests>>> = Mutex::new(RefCell::new(None));

/// When the expiry alert for the certificate in use is due (Unix seconds), and its notAfter.
static EXPIRY_ALERT: Mutex<CriticalSectionRawMutex, RefCell<Option<ExpiryAlert>>> = Mutex::new(RefCell::new(None));

#[derive(Clone, Copy)]
struct ExpiryAlert {
    from: u64,
    not_after: u64,
}

/// The digests of the key in use and its issuer (`None`: no certificate, see [`certificate`]).
pub fn key_digests() -> Option<KeyDigests> {
    KEY_DIGESTS.lock(|digests| *digests.borrow())
}

/// The certificate in use (`None`: locked, unconfigured, or not made yet).
pub fn certificate() -> Option<DeviceCertificate> {
    CERTIFICATE.lock(|certificate| certificate.borrow().clone())
}

/// Forgets the summary (at lock: the host name is the owner's configuration).
pub fn forget() {
    CERTIFICATE.lock(|certificate| *certificate.borrow_mut() = None);
    KEY_DIGESTS.lock(|digests| *digests.borrow_mut() = None);
    EXPIRY_ALERT.lock(|alert| *alert.borrow_mut() = None);
    PUBLISHED_CHAIN.store(0, Ordering::Release);
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

fn record_key(name: &[u8]) -> u64 {
    Settings::key_for("tls-identity", name)
}

fn piece_key(slot: u8, index: usize) -> u64 {
    Settings::key_for("tls-chain", &[slot, index as u8])
}

/// The record of a slot's own key (see [`KEY_IN_SLOT`]).
fn slot_key_record(slot: u8) -> u64 {
    Settings::key_for("tls-chain-key", &[slot])
}

fn host_digest(host: &str) -> [u8; 32] {
    Sha256::digest(host.as_bytes()).into()
}

/// The configured host name (`None`: locked or unconfigured), checked for a certificate.
fn configured_host() -> Option<HostName> {
    let name = crate::mail_settings::read(|current| current.map(|settings| settings.host_name.clone()))?;
    match HostName::new(name.as_str()) {
        Ok(host) => Some(host),
        Err(error) => {
            crate::event_warning!("tls: the host name {} cannot be in a certificate: {:?}", name.as_str(), error);
            None
        }
    }
}

struct ChainHeader {
    slot: u8,
    kind: u8,
    key_in_slot: bool,
    length: usize,
    host_digest: [u8; 32],
}

async fn read_header(settings: &mut Settings) -> Option<ChainHeader> {
    let mut value = [0u8; HEADER_LENGTH];
    match settings.fetch(record_key(b"chain"), &mut value).await {
        Ok(Some(HEADER_LENGTH)) => {
            let mut host_digest = [0u8; 32];
            host_digest.copy_from_slice(&value[4..]);
            Some(ChainHeader { slot: value[0], kind: value[1] & !KEY_IN_SLOT, key_in_slot: value[1] & KEY_IN_SLOT != 0, length: usize::from(u16::from_le_bytes([value[2], value[3]])), host_digest })
        }
        _ => None,
    }
}

/// The stored chain's DER (certificates one after the other, leaf first).
async fn read_chain(settings: &mut Settings, header: &ChainHeader) -> Option<Vec<u8>> {
    if header.length > MAX_CHAIN_DER {
        return None;
    }
    let mut chain = alloc::vec![0u8; header.length];
    for (index, piece) in chain.chunks_mut(KEY_VALUE_CAPACITY).enumerate() {
        let mut record = [0u8; KEY_VALUE_CAPACITY];
        let length = settings.fetch(piece_key(header.slot, index), &mut record).await.ok()??;
        if length != piece.len() {
            return None;
        }
        piece.copy_from_slice(&record[..length]);
    }
    Some(chain)
}

/// Writes `der` (and `slot_key`, the chain's own key if it is not the identity's) to the slot
/// the current header does not name, then switches the header to it (one record write), then
/// removes the old slot's records.
async fn write_chain(
    settings: &mut Settings,
    previous: Option<&ChainHeader>,
    kind: u8,
    host: &HostName,
    der: &[u8],
    slot_key: Option<&DeviceKey>,
) -> Result<(), ErrorCode> {
    if der.len() > MAX_CHAIN_DER {
        return Err(ErrorCode::CertificateRefused(CertificateRefusal::TooLong));
    }
    let slot = previous.map_or(0, |header| header.slot ^ 1);
    if let Some(key) = slot_key {
        settings.store(slot_key_record(slot), &key.to_stored()[..]).await.map_err(|_| ErrorCode::StorageFull)?;
    }
    for (index, piece) in der.chunks(KEY_VALUE_CAPACITY).enumerate() {
        settings.store(piece_key(slot, index), piece).await.map_err(|_| ErrorCode::StorageFull)?;
    }
    let mut header = [0u8; HEADER_LENGTH];
    header[0] = slot;
    header[1] = if slot_key.is_some() { kind | KEY_IN_SLOT } else { kind };
    header[2..4].copy_from_slice(&(der.len() as u16).to_le_bytes());
    header[4..].copy_from_slice(&host_digest(host.as_str()));
    settings.store(record_key(b"chain"), &header).await.map_err(|_| ErrorCode::StorageFull)?;
    if let Some(previous) = previous {
        for index in 0..previous.length.div_ceil(KEY_VALUE_CAPACITY) {
            let _ = settings.remove(piece_key(previous.slot, index)).await;
        }
        if previous.key_in_slot {
            let _ = settings.remove(slot_key_record(previous.slot)).await;
        }
    }
    Ok(())
}

/// Certificate `index` of a DER chain (0: the leaf, 1: its issuer).
fn certificate_at(chain: &[u8], index: usize) -> Option<&[u8]> {
    let mut rest = chain;
    for _ in 0..index {
        rest = homemx_tls::der::expect(rest, homemx_tls::der::SEQUENCE)?.1;
    }
    homemx_tls::der::expect(rest, homemx_tls::der::SEQUENCE).map(|(certificate, _)| certificate.whole)
}

/// The first certificate (the leaf) of a DER chain.
fn leaf(chain: &[u8]) -> Option<&[u8]> {
    certificate_at(chain, 0)
}

/// The SPKI digests of a chain's leaf and of its issuer (the second certificate, if any).
fn chain_key_digests(chain: &[u8]) -> Option<KeyDigests> {
    let key = homemx_tls::spki_sha256(leaf(chain)?)?;
    Some(KeyDigests { key, issuer: certificate_at(chain, 1).and_then(homemx_tls::spki_sha256) })
}

/// The configured host name the identity is for (the TLSA record's `_25._tcp.<host>`).
pub fn host_name() -> Option<HostName> {
    configured_host()
}

/// What the TLS listener presents: the device's key and its chain (DER, leaf first); `None`
/// until a certificate was made or installed.
pub async fn server_identity(settings: &mut Settings) -> Option<(DeviceKey, Vec<u8>)> {
    let header = read_header(settings).await?;
    let key = if header.key_in_slot { load_key_record(settings, slot_key_record(header.slot)).await } else { load_key(settings).await }.ok()??;
    let chain = read_chain(settings, &header).await?;
    Some((key, chain))
}

/// The stored key, if one was made.
async fn load_key(settings: &mut Settings) -> Result<Option<DeviceKey>, ErrorCode> {
    load_key_record(settings, record_key(b"key")).await
}

/// The key stored in `record`, if any.
async fn load_key_record(settings: &mut Settings, record: u64) -> Result<Option<DeviceKey>, ErrorCode> {
    let mut value = SecretBytes::<KEY_VALUE_CAPACITY>::zeroed();
    match settings.fetch(record, value.expose_mut()).await {
        Ok(Some(length)) => DeviceKey::from_stored(&value.expose()[..length]).map(Some).map_err(|_| ErrorCode::DeviceFault),
        Ok(None) => Ok(None),
        Err(_) => Err(ErrorCode::DeviceFault),
    }
}

/// The stored key, or a new one from `random` (stored before it is used).
async fn key_or_generate(settings: &mut Settings, random: &mut ChaCha20Rng) -> Result<DeviceKey, ErrorCode> {
    if let Some(key) = load_key(settings).await? {
        return Ok(key);
    }
    let key = DeviceKey::generate(random);
    let stored = key.to_stored();
    debug_assert_eq!(stored.len(), STORED_KEY_LENGTH);
    settings.store(record_key(b"key"), &stored[..]).await.map_err(|_| ErrorCode::StorageFull)?;
    crate::event_info!("tls: the device's P-256 key was generated and stored (encrypted)");
    Ok(key)
}

/// Publishes the summary of `chain`'s leaf and raises or clears the expiry alert.
fn publish(chain: Option<&[u8]>, self_signed: bool) {
    let summary = chain.and_then(leaf).and_then(CertificateSummary::of);
    let now = crate::wall_clock::unix_seconds();
    let facts = summary.as_ref().map(|summary| DeviceCertificate {
        subject: summary.subject_common_name.as_deref().map(homemx_status::host_name),
        issuer: summary.issuer_common_name.as_deref().map(homemx_status::host_name),
        self_signed,
        not_after_unix: summary.not_after,
    });
    CERTIFICATE.lock(|certificate| *certificate.borrow_mut() = facts);
    let digests = summary.as_ref().and(chain).and_then(chain_key_digests);
    KEY_DIGESTS.lock(|slot| *slot.borrow_mut() = digests);
    // A different chain (made, renewed, installed): the listener rebuilds its configuration.
    let fingerprint = chain_fingerprint(chain);
    if PUBLISHED_CHAIN.swap(fingerprint, Ordering::AcqRel) != fingerprint {
        GENERATION.fetch_add(1, Ordering::AcqRel);
    }
    // ACME renews a CA-issued chain when `[tls.acme]` is configured: its shorter lead.
    let by_acme = !self_signed && crate::mail_settings::read(|current| current.is_some_and(|settings| settings.acme.is_some()));
    let alert = summary.as_ref().map(|summary| {
        let lead = if by_acme { summary.acme_alert_lead() } else { identity::RENEWAL_ALERT_DAYS * 86_400 };
        ExpiryAlert { from: summary.not_after.saturating_sub(lead), not_after: summary.not_after }
    });
    EXPIRY_ALERT.lock(|slot| *slot.borrow_mut() = alert);
    check_expiry_alert_at(now);
}

/// Raises the `certificate_expiring` alert once it is due for the certificate in use, and
/// clears it when the certificate in use is not due (a renewed chain was published).
pub fn check_expiry_alert() {
    check_expiry_alert_at(crate::wall_clock::unix_seconds());
}

fn check_expiry_alert_at(now: Option<u64>) {
    let alert = EXPIRY_ALERT.lock(|slot| *slot.borrow());
    let remaining = match (alert, now) {
        (Some(alert), Some(now)) if now >= alert.from => Some(alert.not_after.saturating_sub(now)),
        _ => None,
    };
    match remaining {
        Some(seconds) if crate::alerts::read(|board| board.get(AlertKind::CertificateExpiring).is_none()) => {
            let (count, unit) = match seconds {
                0 => (0, "seconds (it has expired)"),
                1..86_400 => (seconds, "seconds"),
                _ => (seconds / 86_400, "days"),
            };
            crate::alerts::raise(AlertKind::CertificateExpiring, format_args!("the device's TLS certificate expires in {} {}", count, unit))
        }
        Some(_) => {}
        None => crate::alerts::clear(AlertKind::CertificateExpiring),
    }
}

/// Makes what is missing of the identity (key, self-signed certificate), renews the
/// self-signed certificate when due, and publishes the summary. Without a configuration it
/// does nothing; without the time it makes only the key.
pub async fn refresh(settings: &mut Settings, random: &mut ChaCha20Rng) -> Result<(), ErrorCode> {
    let Some(host) = configured_host() else {
        forget();
        return Ok(());
    };
    let key = key_or_generate(settings, random).await?;
    let header = read_header(settings).await;
    let chain = match &header {
        Some(header) => read_chain(settings, header).await,
        None => None,
    };
    let now = crate::wall_clock::unix_seconds();
    let digest = host_digest(host.as_str());
    let renew = match (&header, &chain) {
        (Some(header), Some(chain)) if header.host_digest == digest => {
            header.kind == SELF_SIGNED
                && match (leaf(chain).and_then(CertificateSummary::of), now) {
                    (Some(summary), Some(now)) => summary.days_until_expiry(now) < SELF_SIGNED_RENEWAL_DAYS || !summary.is_valid_at(now),
                    (None, _) => true,
                    (Some(_), None) => false,
                }
        }
        (Some(header), Some(_)) => {
            crate::event_warning!(
                "tls: the host name changed to {}: the {} certificate is replaced by a self-signed one",
                host.as_str(),
                if header.kind == CA_ISSUED { "CA-issued" } else { "self-signed" }
            );
            true
        }
        _ => true,
    };
    if !renew {
        publish(chain.as_deref(), header.as_ref().is_some_and(|header| header.kind == SELF_SIGNED));
        return Ok(());
    }
    let Some(now) = now else {
        // Made at the first refresh after the clock is set (the courier's job).
        publish(None, true);
        return Ok(());
    };
    let certificate = identity::self_signed_certificate(&key, &host, now.saturating_sub(BACKDATE_SECONDS), identity::DEFAULT_VALIDITY_DAYS, random)
        .map_err(|_| ErrorCode::DeviceFault)?;
    write_chain(settings, header.as_ref(), SELF_SIGNED, &host, &certificate, None).await?;
    crate::event_info!("tls: self-signed certificate for {} made, valid {} days", host.as_str(), identity::DEFAULT_VALIDITY_DAYS);
    publish(Some(&certificate), true);
    Ok(())
}

/// The certificate request (DER) for the device's key and host name (the key is made first if
/// there is none yet).
pub async fn certificate_request(settings: &mut Settings, random: &mut ChaCha20Rng) -> Result<heapless::Vec<u8, MAX_CERTIFICATE_REQUEST>, ErrorCode> {
    let host = configured_host().ok_or(ErrorCode::NotFound)?;
    let key = key_or_generate(settings, random).await?;
    let request = identity::certificate_request(&key, &host).map_err(|_| ErrorCode::DeviceFault)?;
    heapless::Vec::from_slice(&request).map_err(|_| ErrorCode::DeviceFault)
}

/// A chain being uploaded (PEM text, in order).
#[derive(Default)]
pub struct StagedChain {
    text: Vec<u8>,
    total: usize,
}

impl StagedChain {
    /// Drops what was staged.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Takes one chunk of a chain; with the last one, checks the chain against the device's key,
/// host name and the time, and installs it (or refuses it, keeping the chain in force).
pub async fn install_chunk(settings: &mut Settings, staged: &mut StagedChain, chunk: &ChainChunk) -> Result<(), ErrorCode> {
    let total = usize::from(chunk.total_length);
    if total > MAX_CHAIN_PEM {
        staged.clear();
        return Err(ErrorCode::CertificateRefused(CertificateRefusal::TooLong));
    }
    if chunk.offset == 0 {
        staged.clear();
        staged.total = total;
        staged.text.reserve_exact(total);
    }
    if usize::from(chunk.offset) != staged.text.len() || total != staged.total || staged.text.len() + chunk.bytes.len() > total {
        staged.clear();
        return Err(ErrorCode::ChunkOutOfOrder);
    }
    staged.text.extend_from_slice(&chunk.bytes);
    if staged.text.len() < total {
        return Ok(());
    }
    let text = core::mem::take(&mut staged.text);
    staged.clear();
    let now = crate::wall_clock::unix_seconds().ok_or(ErrorCode::TimeUnknown)?;
    let host = configured_host().ok_or(ErrorCode::NotFound)?;
    let key = load_key(settings).await?.ok_or(ErrorCode::NotFound)?;
    let certificates = match identity::check_chain(&text, &key, &host, now) {
        Ok(certificates) => certificates,
        Err(error) => {
            crate::event_warning!("tls install refused: {}", error);
            return Err(ErrorCode::CertificateRefused(refusal(&error)));
        }
    };
    let mut der = Vec::new();
    for certificate in &certificates {
        der.extend_from_slice(certificate.as_ref());
    }
    let header = read_header(settings).await;
    write_chain(settings, header.as_ref(), CA_ISSUED, &host, &der, None).await?;
    publish(Some(&der), false);
    let issuer = certificate().and_then(|facts| facts.issuer).unwrap_or_default();
    crate::event_info!("tls: CA-issued chain of {} certificates installed for {} (issuer {})", certificates.len(), host.as_str(), issuer.as_str());
    Ok(())
}

fn refusal(error: &InstallError) -> CertificateRefusal {
    let index = |index: &usize| (*index).min(usize::from(u8::MAX)) as u8;
    match error {
        InstallError::Empty => CertificateRefusal::Empty,
        InstallError::NotPem => CertificateRefusal::NotPem,
        InstallError::NoCertificate => CertificateRefusal::NoCertificate,
        InstallError::UnexpectedBlock => CertificateRefusal::UnexpectedBlock,
        InstallError::TooLong => CertificateRefusal::TooLong,
        InstallError::Malformed { index: at } => CertificateRefusal::Malformed { index: index(at) },
        InstallError::IssuerMissing => CertificateRefusal::IssuerMissing,
        InstallError::WrongKey => CertificateRefusal::WrongKey,
        InstallError::WrongName => CertificateRefusal::WrongName,
        InstallError::NotYetValid { index: at, not_before } => CertificateRefusal::NotYetValid { index: index(at), not_before: *not_before },
        InstallError::Expired { index: at, not_after } => CertificateRefusal::Expired { index: index(at), not_after: *not_after },
        InstallError::WrongIssuer { index: at } => CertificateRefusal::WrongIssuer { index: index(at) },
        InstallError::BadSignature { index: at } => CertificateRefusal::BadSignature { index: index(at) },
        InstallError::NotForServers => CertificateRefusal::NotForServers,
        InstallError::Refused(_) => CertificateRefusal::PathRefused,
    }
}

// ACME (the courier's `acme` run): the account key, the dates of the chain in use, and the
// issued chain installed like `homemx tls install`'s (the other slot, then one header write).

/// The ACME account key (P-256), made from `random` and stored (encrypted) the first time. A
/// key of its own: a CA refuses the certificate key as the account key.
pub async fn acme_account_key(settings: &mut Settings, random: &mut ChaCha20Rng) -> Result<DeviceKey, ErrorCode> {
    let mut value = SecretBytes::<KEY_VALUE_CAPACITY>::zeroed();
    match settings.fetch(record_key(b"acme-account-key"), value.expose_mut()).await {
        Ok(Some(length)) => return DeviceKey::from_stored(&value.expose()[..length]).map_err(|_| ErrorCode::DeviceFault),
        Ok(None) => {}
        Err(_) => return Err(ErrorCode::DeviceFault),
    }
    let key = DeviceKey::generate(random);
    settings.store(record_key(b"acme-account-key"), &key.to_stored()[..]).await.map_err(|_| ErrorCode::StorageFull)?;
    crate::event_info!("acme: the account's P-256 key was generated and stored (encrypted)");
    Ok(key)
}

/// The certificate's key: with `reuse_key`, the TLS identity's key (made first if there is
/// none); without, a new key from `random`, kept in RAM until [`install_acme_chain`] stores it
/// with its chain.
pub async fn acme_certificate_key(settings: &mut Settings, random: &mut ChaCha20Rng, reuse_key: bool) -> Result<DeviceKey, ErrorCode> {
    if reuse_key {
        key_or_generate(settings, random).await
    } else {
        Ok(DeviceKey::generate(random))
    }
}

/// notBefore and notAfter of the CA-issued chain in use for the host name; `None` when the
/// device presents a self-signed certificate (or none): then a certificate is due now.
pub async fn acme_current_validity(settings: &mut Settings) -> Option<(u64, u64)> {
    let leaf = acme_current_leaf(settings).await?;
    let summary = CertificateSummary::of(&leaf)?;
    Some((summary.not_before, summary.not_after))
}

/// The leaf (DER) of the CA-issued chain in use for the host name, as for
/// [`acme_current_validity`] (the ARI identifier is made from it).
pub async fn acme_current_leaf(settings: &mut Settings) -> Option<Vec<u8>> {
    let host = configured_host()?;
    let header = read_header(settings).await?;
    if header.kind != CA_ISSUED || header.host_digest != host_digest(host.as_str()) {
        return None;
    }
    let chain = read_chain(settings, &header).await?;
    leaf(&chain).map(<[u8]>::to_vec)
}

/// Installs `der` (the chain homemx-acme checked against the device key, the host name and the
/// time: DER certificates one after the other, leaf first) as the CA-issued chain: written to
/// the other slot, then the header switches to it (a power cut before that leaves the old
/// chain), then published (the identity's generation moves: the TLS listener reloads).
/// `new_key`: the chain's own key (`reuse_key = false`), stored in the same slot and switched
/// with the chain by the same header write.
pub async fn install_acme_chain(settings: &mut Settings, der: &[u8], new_key: Option<&DeviceKey>) -> Result<(), ErrorCode> {
    let host = configured_host().ok_or(ErrorCode::NotFound)?;
    let header = read_header(settings).await;
    write_chain(settings, header.as_ref(), CA_ISSUED, &host, der, new_key).await?;
    publish(Some(der), false);
    Ok(())
}

#[cfg(test)]
mod install_power_cuts;
