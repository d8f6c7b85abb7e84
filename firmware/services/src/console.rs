//! The provisioning console on the board's serial link (UART on QEMU, USB CDC-ACM on the real
//! board): the signed wire protocol of `homemx-wire`, answered from the vault.
//!
//! The session checks framing, signatures and the single-use challenge; [`DeviceConsole`]
//! does the work. Secrets arrive here (passphrase, credentials) and go only into the key
//! store or the encrypted key-value store; no answer carries one.
//!
//! The lock has one path ([`DeviceConsole::lock_because`]): the owner's `lock` command and the
//! tamper loop opening (`tamper`, through `channels::TAMPER_OPENED`, which the console task
//! waits on beside the serial link). While the loop is open, `unlock` is refused with
//! `ErrorCode::TamperLoopOpen` (close the loop first).
//!
//! Owns: the console task, the serial link and the store's `Lifecycle` it is handed at boot. Calls:
//! `alerts`, `backup_mx`, `channels`, `cpu_load`, `dyndns`, `event_log`, `inbound_tls`, `instrument`, `mail_settings`,
//! `network`, `random`, `stack`, `status_page`, `store`, `tamper`, `wall_clock`.

use embassy_time::Instant;
use embedded_io_async::{Read, Write};
use homemx_keystore::secret::SecretBytes;
use homemx_wire::config::ConfigItem;
use homemx_wire::device::{ConsoleHandler, ConsoleSession};
use homemx_wire::message::{
    AlertReport, CertificateReport, ChainChunk, Credential, ErrorCode, LogPage, PublicKey, Status, TrustAnchorUpdate,
    MAX_CERTIFICATE_NAME, MAX_CERTIFICATE_REQUEST,
};
use homemx_wire::secret::Secret;
use homemx_wire::DeviceIdentity;
use sha2::{Digest, Sha256};

use crate::network::PartsTypes;
use crate::random::DerivedRandom;
use crate::stack::own_frame;
use crate::store::Lifecycle;
use crate::{bsp, FIRMWARE_VERSION};

type Serial = <bsp::Parts as PartsTypes>::Serial;

/// The device identity every signed command names: derived from the Ethernet MAC address
/// (on the real board that comes from the chip's unique ID).
pub fn device_identity(mac_address: [u8; 6]) -> DeviceIdentity {
    let digest = Sha256::new().chain_update(b"homemx device identity v1").chain_update(mac_address).finalize();
    let mut identity = [0u8; 16];
    identity.copy_from_slice(&digest[..16]);
    identity
}

/// The firmware's side of the console commands; holds the store's one [`Lifecycle`].
pub struct DeviceConsole {
    unlocked: bool,
    lifecycle: Lifecycle,
}

impl ConsoleHandler for DeviceConsole {
    fn firmware_version(&self) -> &str {
        FIRMWARE_VERSION
    }

    fn board(&self) -> &str {
        bsp::BOARD_NAME
    }

    fn unlocked(&self) -> bool {
        self.unlocked
    }

    async fn store_admin_key(&mut self, key: &PublicKey) -> Result<(), ErrorCode> {
        self.lifecycle.store_admin_key(*key).await?;
        crate::event_info!("admin key stored");
        Ok(())
    }

    async fn unlock(&mut self, passphrase: &Secret) -> Result<(), ErrorCode> {
        // An open case or door keeps the device locked, whoever knows the passphrase.
        if crate::tamper::loop_open() {
            crate::event_warning!("tamper: unlock refused, the tamper loop is open");
            return Err(ErrorCode::TamperLoopOpen);
        }
        let started = Instant::now();
        let busy_before = crate::cpu_load::busy_core_clock_counts();
        let measurement = crate::instrument::begin(crate::instrument::Operation::Unlock);
        // With the store held from the unlock to the end of `after`: nothing (delivery above
        // all) sees the open stores before a fetch interrupted by a power cut is reconciled.
        let (result, unlocked) = self
            .lifecycle
            .unlock(passphrase.expose(), async |stores| {
                // Dead temporaries of the unlock (key copies) must be gone before the settings
                // are built: their unused string capacity carries stack bytes along.
                crate::stack::wipe_dead_frames().await;
                crate::mail_settings::reload(async |index| stores.configuration_get(index).await).await;
                crate::backup_mx::reconcile(stores).await;
                crate::status_page::restore_alerts(stores).await;
                crate::status_page::restore_tamper_event(stores).await;
            })
            .await;
        self.unlocked = unlocked;
        if result.is_ok() {
            // The TLS key is made at the first unlock with a configuration (the certificate too
            // once the clock is set).
            self.refresh_tls_identity().await;
        }
        if result.is_err() {
            // A refused unlock leaves the key derivation's dead frames (passphrase-derived
            // state) below us: wiped like the successful path's.
            crate::stack::wipe_dead_frames().await;
        }
        if result.is_ok() {
            crate::channels::FETCH_NOW.signal(());
            crate::channels::CHECK_NOW.signal(());
            crate::channels::RETRY_ALL_NOW.store(true, core::sync::atomic::Ordering::Relaxed);
            crate::channels::DELIVERY_DUE.signal(());
            measurement.end();
        }
        defmt::info!(
            "unlock took {=u64} ms, busy core-clock counts {=u64}",
            started.elapsed().as_millis(),
            crate::cpu_load::busy_core_clock_counts() - busy_before
        );
        result
    }

    async fn lock(&mut self) -> Result<(), ErrorCode> {
        self.lock_because("the owner").await
    }

    async fn status(&mut self) -> Result<Status, ErrorCode> {
        let store = self.lifecycle.status().await?;
        // The counts and alerts are the status page's, from the same snapshot.
        let mut page = homemx_status::StatusSnapshot::default();
        crate::status_page::snapshot(&mut page).await;
        let clamp = |value: u64| value.min(u64::from(u32::MAX)) as u32;
        let alerts = page
            .alerts
            .alerts()
            .iter()
            .map(|alert| AlertReport {
                kind: heapless::String::try_from(alert.kind.name()).unwrap_or_default(),
                count: alert.count,
                first_seen_age_seconds: clamp(page.age_seconds(alert.first_seen_ms)),
                first_seen_unix: page.unix_of(alert.first_seen_ms),
                last_seen_age_seconds: clamp(page.age_seconds(alert.last_seen_ms)),
                needs_acknowledgement: alert.kind.needs_acknowledgement(),
            })
            .collect();
        let mut headline = heapless::String::new();
        // Cut at the capacity if ever longer (a partial write keeps what fitted).
        let _ = core::fmt::Write::write_fmt(&mut headline, format_args!("{}", page.headline_line()));
        Ok(Status {
            verdict: heapless::String::try_from(page.verdict().name()).unwrap_or_default(),
            headline,
            state: store.state,
            uptime_seconds: Instant::now().as_secs() as u32,
            failed_unlocks: store.failed_unlocks.min(u16::MAX as u32) as u16,
            unlock_retry_after_seconds: clamp(store.unlock_wait_seconds),
            configured: store.configured,
            credentials: store.credentials,
            public_address: match page.dyndns.public_ip {
                Some(core::net::IpAddr::V4(address)) => Some(address.octets()),
                _ => None,
            },
            dyndns_host_name: page.dyndns.host.as_ref().and_then(|host| heapless::String::try_from(host.as_str()).ok()),
            spool_messages: page.mail.queued,
            spool_free_bytes: page.spool.as_ref().map_or(0, |spool| clamp(spool.free_bytes)),
            spool_total_bytes: page.spool.as_ref().map_or(0, |spool| clamp(spool.total_bytes)),
            deferred: page.mail.deferred,
            oldest_queued_age_seconds: page.mail.oldest_queued_age_seconds.map(clamp),
            received: page.mail.received,
            delivered: page.mail.delivered,
            bounced: page.mail.bounced,
            alerts,
            alerts_dropped: page.alerts.dropped(),
        })
    }

    async fn config_begin(&mut self) -> Result<(), ErrorCode> {
        self.lifecycle.configuration_begin().await
    }

    async fn config_put(&mut self, item: &ConfigItem) -> Result<(), ErrorCode> {
        self.lifecycle.configuration_put(item).await
    }

    async fn config_commit(&mut self, item_count: u16) -> Result<(), ErrorCode> {
        self.lifecycle.configuration_commit(item_count, async |stores| crate::mail_settings::reload(async |index| stores.configuration_get(index).await).await).await?;
        // A new host name means a new self-signed certificate; a first configuration, the key.
        self.refresh_tls_identity().await;
        Ok(())
    }

    async fn config_get(&mut self, index: u16) -> Result<(u16, ConfigItem), ErrorCode> {
        self.lifecycle.configuration_get(index).await
    }

    async fn set_credential(&mut self, credential: Credential, secret: &Secret) -> Result<(), ErrorCode> {
        self.lifecycle.set_credential(credential, secret.expose()).await
    }

    async fn set_trust_anchor(&mut self, update: &TrustAnchorUpdate) -> Result<(), ErrorCode> {
        self.lifecycle.set_trust_anchor(update).await
    }

    async fn logs(&mut self, start: u32, max_entries: u8) -> Result<LogPage, ErrorCode> {
        Ok(crate::event_log::page(start, max_entries))
    }

    async fn factory_reset(&mut self) -> Result<(), ErrorCode> {
        crate::mail_settings::clear();
        crate::inbound_tls::forget();
        self.lifecycle.factory_reset().await?;
        self.unlocked = false;
        Ok(())
    }

    async fn fetch_now(&mut self) -> Result<(), ErrorCode> {
        if !self.unlocked {
            return Err(ErrorCode::Locked);
        }
        crate::channels::CHECK_NOW.signal(());
        crate::channels::FETCH_NOW.signal(());
        crate::event_info!("backup MX fetch and DynDNS check requested by the owner");
        Ok(())
    }

    async fn dyndns_resume(&mut self) -> Result<(), ErrorCode> {
        if !self.unlocked {
            return Err(ErrorCode::Locked);
        }
        crate::dyndns::owner_resume().await;
        Ok(())
    }

    async fn acknowledge_alert(&mut self, kind: &str) -> Result<(), ErrorCode> {
        if !self.unlocked {
            return Err(ErrorCode::Locked);
        }
        crate::alerts::acknowledge(kind)?;
        crate::status_page::persist_alerts().await;
        Ok(())
    }

    async fn flush_queue(&mut self) -> Result<(), ErrorCode> {
        if !self.unlocked {
            return Err(ErrorCode::Locked);
        }
        crate::channels::RETRY_ALL_NOW.store(true, core::sync::atomic::Ordering::Relaxed);
        crate::channels::DELIVERY_DUE.signal(());
        crate::event_info!("queue flush requested by the owner");
        Ok(())
    }

    async fn tls_certificate_request(&mut self) -> Result<heapless::Vec<u8, MAX_CERTIFICATE_REQUEST>, ErrorCode> {
        let request = self.lifecycle.tls_certificate_request().await?;
        crate::event_info!("tls: certificate request handed out");
        Ok(request)
    }

    async fn tls_install(&mut self, chunk: &ChainChunk) -> Result<(), ErrorCode> {
        self.lifecycle.tls_install(chunk).await
    }

    async fn tls_renew(&mut self) -> Result<(), ErrorCode> {
        if !self.unlocked {
            return Err(ErrorCode::Locked);
        }
        if crate::mail_settings::read(|current| current.and_then(|settings| settings.acme)).is_none() {
            return Err(ErrorCode::NotFound);
        }
        crate::channels::ACME_NOW.signal(());
        crate::channels::DELIVERY_DUE.signal(());
        crate::event_info!("acme: a certificate run requested by the owner");
        Ok(())
    }

    async fn tls_status(&mut self) -> Result<Option<CertificateReport>, ErrorCode> {
        if !self.unlocked {
            return Err(ErrorCode::Locked);
        }
        let now = crate::wall_clock::unix_seconds();
        let (Some(certificate), Some(digests), Some(host)) = (crate::store::tls_certificate(), crate::store::tls_key_digests(), crate::store::tls_host_name())
        else {
            return Ok(None);
        };
        Ok(Some(CertificateReport {
            subject: certificate.subject.as_deref().map(truncated_name),
            issuer: certificate.issuer.as_deref().map(truncated_name),
            self_signed: certificate.self_signed,
            not_after_unix: certificate.not_after_unix,
            days_until_expiry: now.map(|now| certificate.days_until_expiry(now).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32),
            host_name: heapless::String::try_from(host.as_str()).unwrap_or_default(),
            key_sha256: digests.key,
            issuer_key_sha256: digests.issuer,
        }))
    }
}

impl DeviceConsole {
    /// The one lock path (the owner's `lock`, the tamper loop): the open stores are dropped with
    /// their keys, the settings and the TLS server identity forgotten, the dead stack wiped.
    async fn lock_because(&mut self, who: &str) -> Result<(), ErrorCode> {
        self.lifecycle.lock().await?;
        crate::mail_settings::clear();
        crate::inbound_tls::forget();
        self.unlocked = false;
        crate::stack::wipe_dead_frames().await;
        crate::event_info!("locked by {}", who);
        Ok(())
    }

    /// The tamper loop opened: the alert with the time, persisted while the stores are open,
    /// then the lock.
    async fn tamper_opened(&mut self) {
        let event = crate::tamper::TamperEvent::now();
        crate::alerts::raise(homemx_status::AlertKind::Tamper, format_args!("tamper loop opened at {}", event));
        if !self.unlocked {
            crate::event_warning!("tamper: the device was locked already; the alert is written at the next unlock");
            crate::tamper::hold_until_unlock(event);
            return;
        }
        crate::status_page::persist_tamper_event(&event).await;
        if let Err(error) = self.lock_because("the tamper loop").await {
            crate::event_warning!("tamper: the lock failed: {:?}", error);
        }
    }

    async fn refresh_tls_identity(&mut self) {
        if let Err(error) = self.lifecycle.refresh_tls_identity().await {
            crate::event_warning!("tls: the identity could not be made: {:?}", error);
        }
    }
}

/// [`DeviceConsole`] as the session calls it: each command's work is polled in a frame of its
/// own (`stack::own_frame`). Inlined into the session's `execute`, all the commands' temporaries
/// (the status snapshot, certificate requests and chains, the configuration's commit) shared
/// its one poll frame (7.3 KB), under the unlock's key derivation and store building: the
/// deepest stack path of a provisioning.
struct InOwnFrames(DeviceConsole);

impl ConsoleHandler for InOwnFrames {
    fn firmware_version(&self) -> &str {
        self.0.firmware_version()
    }

    fn board(&self) -> &str {
        self.0.board()
    }

    fn unlocked(&self) -> bool {
        self.0.unlocked()
    }

    async fn store_admin_key(&mut self, key: &PublicKey) -> Result<(), ErrorCode> {
        own_frame(self.0.store_admin_key(key)).await
    }

    async fn unlock(&mut self, passphrase: &Secret) -> Result<(), ErrorCode> {
        own_frame(self.0.unlock(passphrase)).await
    }

    async fn lock(&mut self) -> Result<(), ErrorCode> {
        own_frame(self.0.lock()).await
    }

    async fn status(&mut self) -> Result<Status, ErrorCode> {
        own_frame(self.0.status()).await
    }

    async fn config_begin(&mut self) -> Result<(), ErrorCode> {
        own_frame(self.0.config_begin()).await
    }

    async fn config_put(&mut self, item: &ConfigItem) -> Result<(), ErrorCode> {
        own_frame(self.0.config_put(item)).await
    }

    async fn config_commit(&mut self, item_count: u16) -> Result<(), ErrorCode> {
        own_frame(self.0.config_commit(item_count)).await
    }

    async fn config_get(&mut self, index: u16) -> Result<(u16, ConfigItem), ErrorCode> {
        own_frame(self.0.config_get(index)).await
    }

    async fn set_credential(&mut self, credential: Credential, secret: &Secret) -> Result<(), ErrorCode> {
        own_frame(self.0.set_credential(credential, secret)).await
    }

    async fn set_trust_anchor(&mut self, update: &TrustAnchorUpdate) -> Result<(), ErrorCode> {
        own_frame(self.0.set_trust_anchor(update)).await
    }

    async fn logs(&mut self, start: u32, max_entries: u8) -> Result<LogPage, ErrorCode> {
        own_frame(self.0.logs(start, max_entries)).await
    }

    async fn factory_reset(&mut self) -> Result<(), ErrorCode> {
        own_frame(self.0.factory_reset()).await
    }

    async fn fetch_now(&mut self) -> Result<(), ErrorCode> {
        own_frame(self.0.fetch_now()).await
    }

    async fn flush_queue(&mut self) -> Result<(), ErrorCode> {
        own_frame(self.0.flush_queue()).await
    }

    async fn dyndns_resume(&mut self) -> Result<(), ErrorCode> {
        own_frame(self.0.dyndns_resume()).await
    }

    async fn acknowledge_alert(&mut self, kind: &str) -> Result<(), ErrorCode> {
        own_frame(self.0.acknowledge_alert(kind)).await
    }

    async fn tls_certificate_request(&mut self) -> Result<heapless::Vec<u8, MAX_CERTIFICATE_REQUEST>, ErrorCode> {
        own_frame(self.0.tls_certificate_request()).await
    }

    async fn tls_install(&mut self, chunk: &ChainChunk) -> Result<(), ErrorCode> {
        own_frame(self.0.tls_install(chunk)).await
    }

    async fn tls_status(&mut self) -> Result<Option<CertificateReport>, ErrorCode> {
        own_frame(self.0.tls_status()).await
    }

    async fn tls_renew(&mut self) -> Result<(), ErrorCode> {
        own_frame(self.0.tls_renew()).await
    }
}

/// A certificate name for the wire (both bounds are 64 bytes; cut if ever longer).
fn truncated_name(name: &str) -> heapless::String<MAX_CERTIFICATE_NAME> {
    let mut end = name.len().min(MAX_CERTIFICATE_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    heapless::String::try_from(&name[..end]).unwrap_or_default()
}

/// Reads the serial link and answers console frames, forever.
#[embassy_executor::task]
pub async fn console_task(mut serial: Serial, identity: DeviceIdentity, mut random: DerivedRandom, mut lifecycle: Lifecycle) -> ! {
    let admin_key = lifecycle.admin_public_key().await;
    let mut session = ConsoleSession::new(identity, admin_key, &mut random);
    let mut handler = InOwnFrames(DeviceConsole { unlocked: false, lifecycle });
    // What the serial link delivers is frame bytes, the passphrase among them: wiped once
    // handled.
    let mut buffer = SecretBytes::<64>::zeroed();
    loop {
        // Both are cancel-safe: the serial link keeps bytes not yet read, the signal stays set.
        let read = embassy_futures::select::select(serial.read(buffer.expose_mut()), crate::channels::TAMPER_OPENED.wait()).await;
        let count = match read {
            embassy_futures::select::Either::Second(()) => {
                handler.0.tamper_opened().await;
                continue;
            }
            embassy_futures::select::Either::First(Ok(0) | Err(_)) => continue,
            embassy_futures::select::Either::First(Ok(count)) => count,
        };
        let mut input = &buffer.expose()[..count];
        while !input.is_empty() {
            let reply = session.receive(input, &mut handler, &mut random).await;
            if let Some(frame) = reply.frame {
                let _ = serial.write_all(frame).await;
                let _ = serial.flush().await;
            }
            input = &input[reply.consumed..];
        }
        buffer.wipe();
    }
}
