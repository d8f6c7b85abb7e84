//! Test double (feature `testing`): an in-memory [`ConsoleHandler`] and a counting entropy
//! source, for host tests of the protocol. The real handler (key store, flash, KDF) is the
//! firmware's; the QEMU end-to-end tests cover it.

use heapless::{String, Vec};

use crate::config::ConfigItem;
use crate::device::{ConsoleHandler, NonceSource};
use crate::message::{
    AlertReport, Credential, CredentialsPresent, DeviceState, ErrorCode, LogEntry, LogLevel, LogPage,
    PublicKey, Status, TlsService, TrustAnchor, TrustAnchorUpdate, MAX_ALERTS, MAX_LOG_ENTRIES, ChainChunk, CertificateReport,
    MAX_CERTIFICATE_REQUEST, MAX_CHAIN_PEM,
};
use crate::secret::Secret;

/// Most configuration items the double keeps.
pub const MAX_ITEMS: usize = 64;
/// Largest certificate the double keeps.
pub const MAX_CERTIFICATE: usize = 4096;

/// Deterministic "entropy" for tests: a counter spread over the buffer. Never for a device.
#[derive(Debug, Clone, Default)]
pub struct CountingEntropy {
    counter: u64,
}

impl NonceSource for CountingEntropy {
    fn fill_bytes(&mut self, buffer: &mut [u8]) {
        for chunk in buffer.chunks_mut(8) {
            self.counter = self.counter.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let bytes = self.counter.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// An in-memory handler that behaves like the firmware's in the ways the protocol can see.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryHandler {
    /// The stored admin key.
    pub admin_key: Option<PublicKey>,
    /// The passphrase set by the first unlock.
    pub passphrase: Option<Secret>,
    /// Unlocked?
    pub unlocked: bool,
    /// Failed unlocks.
    pub failed_unlocks: u16,
    /// The committed configuration.
    pub configuration: Vec<ConfigItem, MAX_ITEMS>,
    /// A configuration being staged.
    pub staged: Option<Vec<ConfigItem, MAX_ITEMS>>,
    /// Credentials received (the double keeps them so tests can check they arrived).
    pub credentials: [Option<Secret>; 4],
    /// Pins received, per service.
    pub pins: [Option<[u8; 32]>; 4],
    /// Certificates received (complete ones), per service.
    pub certificates: [Option<Vec<u8, MAX_CERTIFICATE>>; 4],
    /// The certificate being received.
    pub partial_certificate: Vec<u8, MAX_CERTIFICATE>,
    /// The log.
    pub log: Vec<LogEntry, 32>,
    /// `fetch_now` calls.
    pub fetches: u32,
    /// `tls_renew` calls that were accepted.
    pub renewals: u32,
    /// `flush_queue` calls.
    pub flushes: u32,
    /// `factory_reset` calls.
    pub factory_resets: u32,
    /// The active alerts.
    pub alerts: Vec<AlertReport, MAX_ALERTS>,
    /// The certificate request the double answers `tls csr` with (empty: none, `NotFound`).
    pub certificate_request: Vec<u8, MAX_CERTIFICATE_REQUEST>,
    /// The certificate chain received so far (PEM text; the double does not check it).
    pub chain: Vec<u8, MAX_CHAIN_PEM>,
    /// Whether the whole chain arrived.
    pub chain_complete: bool,
    /// The certificate the double reports.
    pub certificate: Option<CertificateReport>,
    /// Messages in the spool whose delivery was deferred.
    pub deferred: u32,
}

impl MemoryHandler {
    /// A handler with `count` log entries.
    pub fn with_log(count: u32) -> Self {
        let mut handler = Self::default();
        for sequence in 0..count {
            let mut text = String::new();
            let _ = core::fmt::write(&mut text, format_args!("event number {sequence}"));
            let entry = LogEntry { sequence, uptime_seconds: sequence * 10, level: LogLevel::Info, text };
            let _ = handler.log.push(entry);
        }
        handler
    }

    fn require_unlocked(&self) -> Result<(), ErrorCode> {
        if self.unlocked {
            Ok(())
        } else {
            Err(ErrorCode::Locked)
        }
    }
}

fn service_index(service: TlsService) -> usize {
    match service {
        TlsService::Smarthost => 0,
        TlsService::BackupMx => 1,
        TlsService::DynDns => 2,
        TlsService::Acme => 3,
    }
}

fn credential_index(credential: Credential) -> usize {
    match credential {
        Credential::SmarthostPassword => 0,
        Credential::BackupMxPassword => 1,
        Credential::DynDnsPassword => 2,
        Credential::AcmeEabKey => 3,
    }
}

impl ConsoleHandler for MemoryHandler {
    fn firmware_version(&self) -> &str {
        "0.1.0-test"
    }

    fn board(&self) -> &str {
        "memory"
    }

    fn unlocked(&self) -> bool {
        self.unlocked
    }

    async fn store_admin_key(&mut self, key: &PublicKey) -> Result<(), ErrorCode> {
        self.admin_key = Some(*key);
        Ok(())
    }

    async fn unlock(&mut self, passphrase: &Secret) -> Result<(), ErrorCode> {
        match &self.passphrase {
            None => self.passphrase = Some(passphrase.clone()),
            Some(known) if known == passphrase => {}
            Some(_) => {
                self.failed_unlocks += 1;
                return Err(ErrorCode::WrongPassphrase);
            }
        }
        self.failed_unlocks = 0;
        self.unlocked = true;
        Ok(())
    }

    async fn lock(&mut self) -> Result<(), ErrorCode> {
        self.unlocked = false;
        Ok(())
    }

    async fn status(&mut self) -> Result<Status, ErrorCode> {
        let present = |index: usize| self.credentials[index].is_some();
        Ok(Status {
            verdict: String::try_from(if self.unlocked { "ok" } else { "locked" }).unwrap_or_default(),
            headline: String::try_from(if self.unlocked { "Mail flows — no alerts" } else { "Locked — unlock with the CLI" })
                .unwrap_or_default(),
            state: if self.unlocked { DeviceState::Unlocked } else { DeviceState::Locked },
            uptime_seconds: 42,
            failed_unlocks: self.failed_unlocks,
            unlock_retry_after_seconds: 0,
            configured: !self.configuration.is_empty(),
            credentials: CredentialsPresent {
                smarthost_password: present(0),
                backup_mx_password: present(1),
                dyndns_password: present(2),
            },
            public_address: Some([203, 0, 113, 7]),
            dyndns_host_name: None,
            spool_messages: self.deferred,
            spool_free_bytes: 1 << 20,
            spool_total_bytes: 2 << 20,
            deferred: self.deferred,
            oldest_queued_age_seconds: None,
            received: 0,
            delivered: 0,
            bounced: 0,
            alerts: self.alerts.clone(),
            alerts_dropped: 0,
        })
    }

    async fn config_begin(&mut self) -> Result<(), ErrorCode> {
        self.require_unlocked()?;
        self.staged = Some(Vec::new());
        Ok(())
    }

    async fn config_put(&mut self, item: &ConfigItem) -> Result<(), ErrorCode> {
        self.require_unlocked()?;
        let staged = self.staged.as_mut().ok_or(ErrorCode::ConfigurationSequence)?;
        staged.push(item.clone()).map_err(|_| ErrorCode::StorageFull)
    }

    async fn config_commit(&mut self, item_count: u16) -> Result<(), ErrorCode> {
        self.require_unlocked()?;
        match self.staged.take() {
            Some(staged) if staged.len() == usize::from(item_count) => {
                self.configuration = staged;
                Ok(())
            }
            other => {
                self.staged = other;
                Err(ErrorCode::ConfigurationSequence)
            }
        }
    }

    async fn config_get(&mut self, index: u16) -> Result<(u16, ConfigItem), ErrorCode> {
        self.require_unlocked()?;
        let item = self.configuration.get(usize::from(index)).ok_or(ErrorCode::NotFound)?;
        Ok((self.configuration.len() as u16, item.clone()))
    }

    async fn set_credential(&mut self, credential: Credential, secret: &Secret) -> Result<(), ErrorCode> {
        self.require_unlocked()?;
        self.credentials[credential_index(credential)] = Some(secret.clone());
        Ok(())
    }

    async fn set_trust_anchor(&mut self, update: &TrustAnchorUpdate) -> Result<(), ErrorCode> {
        self.require_unlocked()?;
        let index = service_index(update.service);
        match &update.anchor {
            TrustAnchor::SpkiSha256(pin) => {
                self.pins[index] = Some(*pin);
                self.certificates[index] = None;
            }
            TrustAnchor::CertificateChunk { total_length, offset, bytes } => {
                if *offset == 0 {
                    self.partial_certificate.clear();
                }
                if usize::from(*offset) != self.partial_certificate.len()
                    || usize::from(*offset) + bytes.len() > usize::from(*total_length)
                {
                    return Err(ErrorCode::ChunkOutOfOrder);
                }
                self.partial_certificate
                    .extend_from_slice(bytes)
                    .map_err(|_| ErrorCode::ChunkOutOfOrder)?;
                if self.partial_certificate.len() == usize::from(*total_length) {
                    self.certificates[index] = Some(core::mem::take(&mut self.partial_certificate));
                    self.pins[index] = None;
                }
            }
        }
        Ok(())
    }

    async fn logs(&mut self, start: u32, max_entries: u8) -> Result<LogPage, ErrorCode> {
        let mut entries = Vec::new();
        let mut next = start;
        for entry in self.log.iter().filter(|entry| entry.sequence >= start) {
            if entries.len() >= usize::from(max_entries).min(MAX_LOG_ENTRIES) {
                break;
            }
            next = entry.sequence + 1;
            let _ = entries.push(entry.clone());
        }
        let more = self.log.iter().any(|entry| entry.sequence >= next);
        Ok(LogPage { entries, next, more })
    }

    async fn factory_reset(&mut self) -> Result<(), ErrorCode> {
        let resets = self.factory_resets + 1;
        *self = Self { factory_resets: resets, ..Self::default() };
        Ok(())
    }

    async fn fetch_now(&mut self) -> Result<(), ErrorCode> {
        self.require_unlocked()?;
        self.fetches += 1;
        Ok(())
    }

    async fn flush_queue(&mut self) -> Result<(), ErrorCode> {
        self.require_unlocked()?;
        self.flushes += 1;
        Ok(())
    }

    async fn dyndns_resume(&mut self) -> Result<(), ErrorCode> {
        self.require_unlocked()?;
        self.flushes += 1;
        Ok(())
    }

    async fn acknowledge_alert(&mut self, kind: &str) -> Result<(), ErrorCode> {
        self.require_unlocked()?;
        let index = self.alerts.iter().position(|alert| alert.kind.as_str() == kind).ok_or(ErrorCode::NotFound)?;
        if !self.alerts[index].needs_acknowledgement {
            return Err(ErrorCode::NotAcknowledgeable);
        }
        self.alerts.remove(index);
        Ok(())
    }

    async fn tls_certificate_request(&mut self) -> Result<Vec<u8, MAX_CERTIFICATE_REQUEST>, ErrorCode> {
        self.require_unlocked()?;
        if self.certificate_request.is_empty() {
            return Err(ErrorCode::NotFound);
        }
        Ok(self.certificate_request.clone())
    }

    async fn tls_install(&mut self, chunk: &ChainChunk) -> Result<(), ErrorCode> {
        self.require_unlocked()?;
        if chunk.offset == 0 {
            self.chain.clear();
            self.chain_complete = false;
        }
        if usize::from(chunk.offset) != self.chain.len() || usize::from(chunk.total_length) > MAX_CHAIN_PEM {
            return Err(ErrorCode::ChunkOutOfOrder);
        }
        self.chain.extend_from_slice(&chunk.bytes).map_err(|_| ErrorCode::ChunkOutOfOrder)?;
        self.chain_complete = self.chain.len() == usize::from(chunk.total_length);
        Ok(())
    }

    async fn tls_status(&mut self) -> Result<Option<CertificateReport>, ErrorCode> {
        self.require_unlocked()?;
        Ok(self.certificate.clone())
    }

    async fn tls_renew(&mut self) -> Result<(), ErrorCode> {
        self.require_unlocked()?;
        if !self.configuration.iter().any(|item| matches!(item, ConfigItem::Acme(_))) {
            return Err(ErrorCode::NotFound);
        }
        self.renewals += 1;
        Ok(())
    }
}
