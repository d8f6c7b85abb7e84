//! The device's secrets and everything they open: the key store (locked at boot), and while
//! unlocked the encrypted key-value store (configuration, credentials, trust anchors) and
//! the mail spool, both keyed with the data key. Locking drops them, which wipes their keys.
//!
//! One `Vault` exists, owned by the store service (`super`); nothing outside it can name one.
//!
//! Owns: the open stores (`OPEN_STORES`: the key-value store and the spool while unlocked). Calls:
//! `alerts`, `channels`, `cpu_load`, `event_log`, `network` (the parts' types), `random`, `stack`, `storage`, `store::identity`.

use embassy_time::Instant;
use embedded_storage_async::nor_flash::{NorFlash, ReadNorFlash};
use homemx_keystore::secret::SecretBytes;
use homemx_keystore::{Keystore, KeystoreConfig, KeystoreError, KeystoreState, UnlockError};
use homemx_spool::{CounterMark, Envelope, KeyValueStore, MessageWriter, Spool, SpoolError};
use homemx_wire::config::ConfigItem;
use homemx_wire::message::{Credential, ErrorCode, TlsService, TrustAnchor, TrustAnchorUpdate};
use homemx_wire::validate::{ConfigurationCheck, Refusal};

use static_cell::StaticCell;

use crate::network::PartsTypes;
use crate::random::DerivedRandom;
use crate::storage::{FlashPartition, FlashPartitions, KeyFlashPartition, KEY_VALUE_SECTORS, SPOOL_MESSAGES, SPOOL_SECTORS};

/// The board's chip key type (the key store binds its records to it; `NoChipKey` on QEMU).
pub type BoardChipKey = <crate::bsp::Parts as PartsTypes>::ChipKey;

/// The mail spool as the firmware uses it.
pub type MailSpool = Spool<FlashPartition, DerivedRandom, SPOOL_SECTORS, SPOOL_MESSAGES>;
/// Keys whose newest item the key-value store's cache remembers (configuration items, alerts,
/// the DynDNS guard, counters; UIDLs pass through it).
const CACHED_KEYS: usize = 48;
/// The encrypted key-value store as the firmware uses it, with sequential-storage's cache (so
/// a fetch does not read every item written since the last garbage collection).
pub type Settings = KeyValueStore<FlashPartition, DerivedRandom, homemx_spool::PageAndKeyCache<KEY_VALUE_SECTORS, CACHED_KEYS>>;

/// Where the open stores live, 14,464 B on the H5 (llvm-nm): the spool's index of 128 messages
/// at 80 B (10,240 B), its sequence and state per sector (5 B × 256 sectors), its record buffer
/// (1,088 B), the key-value store with its cache (48 keys, 64 pages) and both ciphers; 23,072 B
/// on QEMU, whose spool has 1,982 sectors. In place, never inside the `Vault` value, so that
/// mounting the vault and moving it into the store moves only the key store and the
/// partitions (the stores inline made two 28 KB copies on the boot stack). A `StaticCell`
/// in `.bss`, set to closed at mount.
static OPEN_STORES: StaticCell<OpenSlot> = StaticCell::new();

/// The open stores' place: each store is built straight into it by a function of its own, and
/// dropped in place at lock. Building `Some(OpenStores { .. })` in one expression kept every
/// store's temporaries side by side: an 83 KB stack frame at unlock, the deepest of the firmware.
struct OpenSlot {
    stores: core::mem::MaybeUninit<OpenStores>,
    /// Both stores of `stores` are initialised.
    open: bool,
}

impl OpenSlot {
    const CLOSED: OpenSlot = OpenSlot { stores: core::mem::MaybeUninit::uninit(), open: false };

    fn is_some(&self) -> bool {
        self.open
    }

    fn as_mut(&mut self) -> Option<&mut OpenStores> {
        // SAFETY: `open` says both stores were written (`fill`) and not dropped since (`close`).
        self.open.then(|| unsafe { self.stores.assume_init_mut() })
    }

    /// Drops the stores (their ciphers wipe the keys), if open.
    fn close(&mut self) {
        if core::mem::take(&mut self.open) {
            // SAFETY: both stores were initialised, and `open` is now false: never dropped twice.
            unsafe { self.stores.assume_init_drop() };
        }
    }

    /// Builds the key-value store and the spool under `key` in place, each in a frame of its
    /// own (see [`build_settings`], [`build_spool`]); closed first if open.
    fn fill(&mut self, key_value_partition: &FlashPartition, spool_partition: &FlashPartition, random: &mut DerivedRandom, key: &[u8; 32]) -> Result<(), ErrorCode> {
        self.close();
        let stores = self.stores.as_mut_ptr();
        // SAFETY: the field pointers are in bounds of `stores`; nothing is read through them.
        let (settings, spool) = unsafe { (core::ptr::addr_of_mut!((*stores).settings), core::ptr::addr_of_mut!((*stores).spool)) };
        build_settings(settings, key_value_partition, random, key)?;
        if let Err(error) = build_spool(spool, spool_partition, random, key) {
            // SAFETY: `build_settings` succeeded, so `settings` holds a store; dropped once.
            unsafe { core::ptr::drop_in_place(settings) };
            return Err(error);
        }
        self.open = true;
        Ok(())
    }
}

/// What is open while the device is unlocked.
pub struct OpenStores {
    /// Configuration, credentials, trust anchors.
    pub settings: Settings,
    /// The mail spool.
    pub spool: MailSpool,
}

/// The key of the spool's [`CounterMark`] in the key-value store.
fn spool_counter_mark_key() -> u64 {
    settings_key("spool", b"counter-mark")
}

impl OpenStores {
    /// The current configuration's (generation, item count), if one was committed.
    pub async fn current_configuration(&mut self) -> Result<Option<(u32, u16)>, ErrorCode> {
        let mut value = [0u8; 6];
        match self.settings.fetch(settings_key("configuration", CONFIGURATION_CURRENT), &mut value).await {
            Ok(Some(6)) => Ok(Some((
                u32::from_le_bytes([value[0], value[1], value[2], value[3]]),
                u16::from_le_bytes([value[4], value[5]]),
            ))),
            Ok(_) => Ok(None),
            Err(_) => Err(ErrorCode::DeviceFault),
        }
    }

    /// Item `index` of the current configuration and the item count.
    pub async fn configuration_get(&mut self, index: u16) -> Result<(u16, ConfigItem), ErrorCode> {
        let (generation, count) = self.current_configuration().await?.ok_or(ErrorCode::NotFound)?;
        if index >= count {
            return Err(ErrorCode::NotFound);
        }
        let mut encoded = [0u8; homemx_spool::KEY_VALUE_CAPACITY];
        let length = self
            .settings
            .fetch(configuration_item_key(generation, index), &mut encoded)
            .await
            .map_err(|_| ErrorCode::DeviceFault)?
            .ok_or(ErrorCode::DeviceFault)?;
        let item = postcard::from_bytes(&encoded[..length]).map_err(|_| ErrorCode::DeviceFault)?;
        Ok((count, item))
    }

    /// After the spool's mount: checks it against the persisted counter mark, so its sector
    /// sequences and message ids never repeat and a rolled-back flash image is caught. A
    /// rollback is tampering: logged, alerted, and the unlock refused.
    async fn guard_spool_counters(&mut self) -> Result<(), ErrorCode> {
        let mut bytes = [0u8; CounterMark::ENCODED_SIZE];
        let mark = match self.settings.fetch(spool_counter_mark_key(), &mut bytes).await {
            Ok(Some(length)) => Some(CounterMark::decode(&bytes[..length]).ok_or(ErrorCode::DeviceFault)?),
            Ok(None) => None,
            Err(_) => return Err(ErrorCode::DeviceFault),
        };
        match self.spool.guard_counters(mark) {
            Ok(()) => Ok(()),
            Err(SpoolError::RolledBack) => {
                crate::alerts::raise(
                    homemx_status::alert::AlertKind::SpoolRolledBack,
                    format_args!("spool rolled back: old sectors are back on flash or the counter mark is older than the spool; unlock refused"),
                );
                Err(ErrorCode::DeviceFault)
            }
            Err(_) => Err(ErrorCode::DeviceFault),
        }
    }

    /// Persists the spool's counter mark when it is due (at unlock, and when idle after a
    /// delivery: the mark reserves ahead, so this is never needed on the way to `250`).
    pub async fn persist_spool_counters(&mut self) {
        let Some(mark) = self.spool.counter_mark_due() else {
            return;
        };
        match self.settings.store(spool_counter_mark_key(), &mark.encode()).await {
            Ok(()) => self.spool.counter_mark_persisted(mark),
            Err(error) => crate::event_warning!("spool: persisting the counter mark failed: {:?}", defmt::Debug2Format(&error)),
        }
    }

    /// Begins a spool message. If the spool's reserved counters ran out (the delivery task,
    /// which persists the mark, fell behind by a table's worth of messages) the message is
    /// refused for now (4xx, the sender retries) and the delivery task is woken to persist
    /// it; the session itself never writes the key-value store (its future would grow every
    /// session task by the store's future).
    pub async fn begin_spool_message(
        &mut self,
        envelope: &Envelope<'_>,
        expected_length: u32,
    ) -> Result<MessageWriter, SpoolError<<FlashPartition as embedded_storage_async::nor_flash::ErrorType>::Error>> {
        let result = self.spool.begin_message(envelope, expected_length).await;
        if matches!(result, Err(SpoolError::CountersExhausted)) {
            crate::channels::DELIVERY_DUE.signal(());
        }
        result
    }
}

/// A configuration being staged (between `ConfigBegin` and `ConfigCommit`): its generation,
/// the items stored so far, and the wire's rules fed with them. Whoever signed the items, one
/// that breaks the rules is refused and a whole that does is never made current.
struct StagedConfiguration {
    generation: u32,
    count: u16,
    check: ConfigurationCheck,
}

/// Key store plus the stores it unlocks.
pub struct Vault {
    keystore: Keystore<KeyFlashPartition, DerivedRandom, BoardChipKey>,
    key_value_partition: FlashPartition,
    spool_partition: FlashPartition,
    random: DerivedRandom,
    /// [`OPEN_STORES`]: open while unlocked.
    open: &'static mut OpenSlot,
    pending_admin_key: Option<[u8; 32]>,
    staged_configuration: Option<StagedConfiguration>,
    certificate_progress: [u16; 4],
    /// A CA-issued chain being uploaded (`homemx tls install`).
    staged_chain: super::identity::StagedChain,
}

fn settings_key(namespace: &str, name: &[u8]) -> u64 {
    Settings::key_for(namespace, name)
}

const CONFIGURATION_CURRENT: &[u8] = b"current";

fn configuration_item_key(generation: u32, index: u16) -> u64 {
    let mut name = [0u8; 6];
    name[..4].copy_from_slice(&generation.to_le_bytes());
    name[4..].copy_from_slice(&index.to_le_bytes());
    settings_key("configuration", &name)
}

fn credential_name(credential: Credential) -> &'static [u8] {
    match credential {
        Credential::SmarthostPassword => b"smarthost",
        Credential::BackupMxPassword => b"backup-mx",
        Credential::DynDnsPassword => b"dyndns",
        Credential::AcmeEabKey => b"acme-eab",
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

/// Test builds only: logs SHA-256 of the data key (the RAM test hashes every 32-byte window
/// of a RAM dump to find copies of the key); the key itself is never logged.
#[cfg(feature = "key-fingerprint")]
fn log_key_fingerprint(key: &[u8; 32]) {
    use core::fmt::Write;
    use sha2::Digest;
    let mut hex = heapless::String::<64>::new();
    for byte in sha2::Sha256::digest(key) {
        let _ = write!(hex, "{byte:02x}");
    }
    defmt::info!("test: data key fingerprint {=str}", hex.as_str());
}

fn now_seconds() -> u64 {
    Instant::now().as_secs()
}

/// Builds the key-value store under `key` and writes it to `place`. Not inlined and not async
/// (no copy of a store may live in a future), so that the copy its return leaves (with the key
/// in its cipher) lies in this function's own stack frame, which the caller wipes
/// (`stack::wipe_below`) once the stores are open.
#[inline(never)]
fn build_settings(place: *mut Settings, partition: &FlashPartition, random: &mut DerivedRandom, key: &[u8; 32]) -> Result<(), ErrorCode> {
    let region = 0..partition.capacity() as u32;
    let settings = Settings::cached(partition.clone(), region, key, random.derive()).map_err(|_| ErrorCode::DeviceFault)?;
    // SAFETY: `place` is the `settings` field of the closed `OpenSlot`: valid for a write, and
    // what it held was dropped (or never written).
    unsafe { place.write(settings) };
    Ok(())
}

/// Builds the spool (~19 KB) straight into `place` (`Spool::new_in`: no copy of it on the
/// stack). Not inlined, like [`build_settings`].
#[inline(never)]
fn build_spool(place: *mut MailSpool, partition: &FlashPartition, random: &mut DerivedRandom, key: &[u8; 32]) -> Result<(), ErrorCode> {
    let region = 0..partition.capacity() as u32;
    // SAFETY: `place` is the `spool` field of the closed `OpenSlot`, valid for writes; a
    // `MaybeUninit<MailSpool>` has the layout of a `MailSpool`.
    let place = unsafe { &mut *place.cast::<core::mem::MaybeUninit<MailSpool>>() };
    MailSpool::new_in(place, partition.clone(), region, key, random.derive()).map_err(|_| ErrorCode::DeviceFault)?;
    Ok(())
}

impl Vault {
    /// Mounts the key store; the device is locked (or factory-fresh) afterwards.
    pub async fn mount(partitions: FlashPartitions, chip_key: BoardChipKey, mut random: DerivedRandom) -> Result<Self, KeystoreError> {
        let keystore_random = random.derive();
        let region = 0..partitions.key_store.capacity() as u32;
        let keystore =
            Keystore::mount_with_chip_key(partitions.key_store, region, keystore_random, chip_key, KeystoreConfig::default()).await?;
        Ok(Vault {
            keystore,
            key_value_partition: partitions.key_value_store,
            spool_partition: partitions.spool,
            random,
            // Mounted once, at boot (a second mount is a bug: `uninit` panics).
            open: OPEN_STORES.uninit().write(OpenSlot::CLOSED),
            pending_admin_key: None,
            staged_configuration: None,
            certificate_progress: [0; 4],
            staged_chain: super::identity::StagedChain::default(),
        })
    }

    /// Factory-fresh, locked or unlocked.
    pub fn state(&self) -> KeystoreState {
        self.keystore.state()
    }

    /// The enrolled admin key, from flash (or enrolled in this boot, before the first unlock).
    pub fn admin_public_key(&self) -> Option<[u8; 32]> {
        self.keystore.admin_public_key().or(self.pending_admin_key)
    }

    /// The key record's binding to the chip key (`None` when factory-fresh).
    pub fn binding(&self) -> Option<homemx_keystore::Binding> {
        self.keystore.binding()
    }

    /// Failed unlocks since the last success (survives reset).
    pub fn failed_unlocks(&self) -> u32 {
        self.keystore.failed_attempts()
    }

    /// Seconds until the next unlock attempt is accepted.
    pub fn unlock_wait_seconds(&self) -> u64 {
        self.keystore.unlock_wait_seconds(now_seconds())
    }

    /// The open stores, when unlocked.
    pub fn open_stores(&mut self) -> Option<&mut OpenStores> {
        self.open.as_mut()
    }

    /// Enrols (factory-fresh: kept until the first unlock creates the data key) or rotates
    /// (unlocked only) the admin key.
    pub async fn store_admin_key(&mut self, key: [u8; 32]) -> Result<(), ErrorCode> {
        match self.keystore.state() {
            KeystoreState::FactoryFresh => {
                self.pending_admin_key = Some(key);
                Ok(())
            }
            KeystoreState::Locked => Err(ErrorCode::Locked),
            KeystoreState::Unlocked => self.keystore.rotate_admin_key(key).await.map_err(keystore_error),
        }
    }

    /// Unlocks with the passphrase (creating and wrapping the data key on first use) and
    /// opens the key-value store and the spool.
    pub async fn unlock(&mut self, passphrase: &[u8]) -> Result<(), ErrorCode> {
        let derivation_started = crate::cpu_load::busy_core_clock_counts();
        let data_key = match self.keystore.state() {
            KeystoreState::Unlocked if self.open.is_some() => return Ok(()),
            KeystoreState::FactoryFresh => {
                let admin_key = self.pending_admin_key.ok_or(ErrorCode::NotEnrolled)?;
                let key = self.keystore.initialise(passphrase, admin_key).await.map_err(keystore_error)?;
                self.pending_admin_key = None;
                key
            }
            _ => self.keystore.unlock(passphrase, now_seconds()).await.map_err(unlock_error)?,
        };
        let derivation_counts = crate::cpu_load::busy_core_clock_counts() - derivation_started;
        let key = data_key.expose_secret();
        #[cfg(feature = "key-fingerprint")]
        log_key_fingerprint(key);
        let opened = self.open.fill(&self.key_value_partition, &self.spool_partition, &mut self.random, key);
        // Building the stores moved them (with their copies of the data key) through the
        // stack, in the frames of `build_settings` and `build_spool`, below this one.
        crate::stack::wipe_below();
        opened?;
        let stores = self.open.as_mut().ok_or(ErrorCode::DeviceFault)?;
        // The key derivation, the mount and the maintenance each in polls of their own: one
        // executor runs every task (see crate::cpu_load).
        embassy_futures::yield_now().await;
        let report = match stores.spool.mount().await {
            Ok(report) => report,
            Err(_) => {
                self.lock();
                return Err(ErrorCode::DeviceFault);
            }
        };
        if let Err(error) = stores.guard_spool_counters().await {
            self.lock();
            return Err(error);
        }
        embassy_futures::yield_now().await;
        let _ = stores.spool.maintain().await;
        stores.persist_spool_counters().await;
        defmt::info!("unlock: key derivation and unwrap took {=u64} busy core-clock counts", derivation_counts);
        crate::event_info!(
            "unlocked; spool: {} messages, {} damaged, {} corrupt records",
            report.messages_found,
            report.messages_damaged,
            report.records_corrupt
        );
        Ok(())
    }

    /// Drops the open stores (their ciphers wipe the keys), locks the key store (which wipes
    /// its keys) and wipes what earlier calls left on the stack (moved copies of the stores
    /// with their keys, passwords in dead frames).
    pub fn lock(&mut self) {
        self.open.close();
        self.staged_configuration = None;
        self.staged_chain.clear();
        super::identity::forget();
        self.keystore.lock();
        crate::stack::wipe_below();
    }

    fn stores(&mut self) -> Result<&mut OpenStores, ErrorCode> {
        self.open.as_mut().ok_or(ErrorCode::Locked)
    }

    /// The current configuration's (generation, item count), if one was committed.
    pub async fn current_configuration(&mut self) -> Result<Option<(u32, u16)>, ErrorCode> {
        self.stores()?.current_configuration().await
    }

    /// Starts staging a new configuration generation.
    pub async fn configuration_begin(&mut self) -> Result<(), ErrorCode> {
        let generation = self.current_configuration().await?.map_or(1, |(generation, _)| generation.wrapping_add(1));
        self.staged_configuration = Some(StagedConfiguration { generation, count: 0, check: ConfigurationCheck::new() });
        Ok(())
    }

    /// Stores one item of the staged configuration, if the wire's rules take it with the items
    /// before it; a refused item ends the staging (its items are removed, the current
    /// configuration stays in force).
    pub async fn configuration_put(&mut self, item: &ConfigItem) -> Result<(), ErrorCode> {
        let staged = self.staged_configuration.as_ref().ok_or(ErrorCode::ConfigurationSequence)?;
        let (generation, count) = (staged.generation, staged.count);
        let mut check = staged.check.clone();
        if let Err(refusal) = check.add(item) {
            self.refuse_staged(refusal).await;
            return Err(ErrorCode::InvalidConfiguration);
        }
        let mut encoded = [0u8; homemx_spool::KEY_VALUE_CAPACITY];
        let bytes = postcard::to_slice(item, &mut encoded).map_err(|_| ErrorCode::InvalidConfiguration)?;
        let stores = self.stores()?;
        stores.settings.store(configuration_item_key(generation, count), bytes).await.map_err(|_| ErrorCode::StorageFull)?;
        self.staged_configuration = Some(StagedConfiguration { generation, count: count + 1, check });
        Ok(())
    }

    /// Ends a staging the rules refused: logs the rule, removes the staged items (never the
    /// current configuration's: they are another generation's).
    async fn refuse_staged(&mut self, refusal: Refusal) {
        crate::event_warning!("configuration refused: {}: {}", refusal.field, refusal.rule);
        let Some(staged) = self.staged_configuration.take() else {
            return;
        };
        if let Ok(stores) = self.stores() {
            for index in 0..staged.count {
                let _ = stores.settings.remove(configuration_item_key(staged.generation, index)).await;
            }
        }
    }

    /// Makes the staged configuration current (one record write: atomic) and removes the
    /// previous generation's items, if the whole meets the wire's rules; otherwise the current
    /// configuration stays in force and the staged items are removed.
    pub async fn configuration_commit(&mut self, item_count: u16) -> Result<(), ErrorCode> {
        let staged = self.staged_configuration.as_ref().ok_or(ErrorCode::ConfigurationSequence)?;
        let (generation, count) = (staged.generation, staged.count);
        if count != item_count {
            return Err(ErrorCode::ConfigurationSequence);
        }
        if let Err(refusal) = staged.check.finish() {
            self.refuse_staged(refusal).await;
            return Err(ErrorCode::InvalidConfiguration);
        }
        let previous = self.current_configuration().await?;
        let mut value = [0u8; 6];
        value[..4].copy_from_slice(&generation.to_le_bytes());
        value[4..].copy_from_slice(&count.to_le_bytes());
        let stores = self.stores()?;
        stores.settings.store(settings_key("configuration", CONFIGURATION_CURRENT), &value).await.map_err(|_| ErrorCode::StorageFull)?;
        if let Some((old_generation, old_count)) = previous {
            for index in 0..old_count {
                let _ = stores.settings.remove(configuration_item_key(old_generation, index)).await;
            }
        }
        self.staged_configuration = None;
        crate::event_info!("configuration committed: {} items", count);
        Ok(())
    }

    /// Item `index` of the current configuration and the item count.
    pub async fn configuration_get(&mut self, index: u16) -> Result<(u16, ConfigItem), ErrorCode> {
        self.stores()?.configuration_get(index).await
    }

    /// Stores a write-only credential.
    pub async fn set_credential(&mut self, credential: Credential, secret: &[u8]) -> Result<(), ErrorCode> {
        if secret.len() > homemx_spool::KEY_VALUE_CAPACITY {
            return Err(ErrorCode::InvalidConfiguration);
        }
        let stores = self.stores()?;
        stores.settings.store(settings_key("credential", credential_name(credential)), secret).await.map_err(|_| ErrorCode::StorageFull)?;
        crate::event_info!("credential set: {}", core::str::from_utf8(credential_name(credential)).unwrap_or("?"));
        Ok(())
    }

    /// Whether a credential is set (its value is never read out through here).
    pub async fn has_credential(&mut self, credential: Credential) -> bool {
        let Ok(stores) = self.stores() else {
            return false;
        };
        let mut value = SecretBytes::<{ homemx_spool::KEY_VALUE_CAPACITY }>::zeroed();
        matches!(stores.settings.fetch(settings_key("credential", credential_name(credential)), value.expose_mut()).await, Ok(Some(_)))
    }

    /// Reads a credential into `out` for a provider login; returns its length. `out` should
    /// be a [`SecretBytes`] (wiped on every way out of the caller). `None` while locked or
    /// when it was never set.
    pub async fn credential(&mut self, credential: Credential, out: &mut [u8]) -> Option<usize> {
        let stores = self.stores().ok()?;
        let mut value = SecretBytes::<{ homemx_spool::KEY_VALUE_CAPACITY }>::zeroed();
        let length = stores.settings.fetch(settings_key("credential", credential_name(credential)), value.expose_mut()).await.ok()??;
        let slot = out.get_mut(..length)?;
        slot.copy_from_slice(&value.expose()[..length]);
        Some(length)
    }

    /// The trust anchor of a provider service: a pin, or a CA certificate copied into
    /// `certificate` (its length returned). `None` while locked, unset, or too large.
    pub async fn trust_anchor(&mut self, service: TlsService, certificate: &mut [u8]) -> Option<crate::store::TrustSource> {
        let service = service_index(service) as u8;
        let stores = self.stores().ok()?;
        let mut value = [0u8; 33];
        let length = stores.settings.fetch(settings_key("trust-anchor", &[service]), &mut value).await.ok()??;
        match (value[0], length) {
            (1, 33) => {
                let mut pin = [0u8; 32];
                pin.copy_from_slice(&value[1..33]);
                Some(crate::store::TrustSource::PinnedKey(pin))
            }
            (2, 3) => {
                let total = u16::from_le_bytes([value[1], value[2]]) as usize;
                let target = certificate.get_mut(..total)?;
                for (index, piece) in target.chunks_mut(homemx_spool::KEY_VALUE_CAPACITY).enumerate() {
                    let mut record = [0u8; homemx_spool::KEY_VALUE_CAPACITY];
                    let got = stores.settings.fetch(settings_key("trust-anchor-der", &[service, index as u8]), &mut record).await.ok()??;
                    if got != piece.len() {
                        return None;
                    }
                    piece.copy_from_slice(&record[..got]);
                }
                Some(crate::store::TrustSource::CaAnchor(total))
            }
            _ => None,
        }
    }

    /// Stores a pin, or one in-order chunk of a CA certificate (in 256-byte records).
    pub async fn set_trust_anchor(&mut self, update: &TrustAnchorUpdate) -> Result<(), ErrorCode> {
        let service = service_index(update.service);
        let stores = self.open.as_mut().ok_or(ErrorCode::Locked)?;
        let service_name = [service as u8];
        match &update.anchor {
            TrustAnchor::SpkiSha256(pin) => {
                let mut value = [0u8; 33];
                value[0] = 1;
                value[1..].copy_from_slice(pin);
                stores.settings.store(settings_key("trust-anchor", &service_name), &value).await.map_err(|_| ErrorCode::StorageFull)?;
                crate::event_info!("trust anchor set: key pin for service {}", service);
            }
            TrustAnchor::CertificateChunk { total_length, offset, bytes } => {
                if *offset != self.certificate_progress[service] && *offset != 0 {
                    return Err(ErrorCode::ChunkOutOfOrder);
                }
                if *offset as usize + bytes.len() > *total_length as usize {
                    return Err(ErrorCode::ChunkOutOfOrder);
                }
                for (part, piece) in bytes.chunks(homemx_spool::KEY_VALUE_CAPACITY).enumerate() {
                    let position = *offset as usize + part * homemx_spool::KEY_VALUE_CAPACITY;
                    let name = [service as u8, (position / homemx_spool::KEY_VALUE_CAPACITY) as u8];
                    stores.settings.store(settings_key("trust-anchor-der", &name), piece).await.map_err(|_| ErrorCode::StorageFull)?;
                }
                let end = *offset + bytes.len() as u16;
                self.certificate_progress[service] = end;
                if end == *total_length {
                    let mut value = [0u8; 3];
                    value[0] = 2;
                    value[1..].copy_from_slice(&total_length.to_le_bytes());
                    stores.settings.store(settings_key("trust-anchor", &service_name), &value).await.map_err(|_| ErrorCode::StorageFull)?;
                    self.certificate_progress[service] = 0;
                    crate::event_info!("trust anchor set: CA certificate ({} bytes) for service {}", total_length, service);
                }
            }
        }
        Ok(())
    }

    /// Makes the TLS identity's missing parts (key, self-signed certificate), renews the
    /// self-signed certificate when due and publishes the summary (see `super::identity`).
    pub async fn refresh_tls_identity(&mut self) -> Result<(), ErrorCode> {
        let mut random = self.random.rng();
        let stores = self.open.as_mut().ok_or(ErrorCode::Locked)?;
        super::identity::refresh(&mut stores.settings, &mut random).await
    }

    /// The certificate request (DER) for the device's TLS key and host name.
    pub async fn tls_certificate_request(&mut self) -> Result<heapless::Vec<u8, { homemx_wire::message::MAX_CERTIFICATE_REQUEST }>, ErrorCode> {
        let mut random = self.random.rng();
        let stores = self.open.as_mut().ok_or(ErrorCode::Locked)?;
        super::identity::certificate_request(&mut stores.settings, &mut random).await
    }

    /// One chunk of a CA-issued chain; the last one checks and installs it.
    pub async fn tls_install(&mut self, chunk: &homemx_wire::message::ChainChunk) -> Result<(), ErrorCode> {
        let stores = self.open.as_mut().ok_or(ErrorCode::Locked)?;
        super::identity::install_chunk(&mut stores.settings, &mut self.staged_chain, chunk).await
    }

    /// Destroys the wrapped data key and erases the key-value store and the spool.
    pub async fn factory_reset(&mut self) -> Result<(), ErrorCode> {
        self.lock();
        self.pending_admin_key = None;
        self.keystore.factory_reset().await.map_err(keystore_error)?;
        for partition in [&mut self.key_value_partition, &mut self.spool_partition] {
            let size = partition.capacity() as u32;
            partition.erase(0, size).await.map_err(|_| ErrorCode::DeviceFault)?;
        }
        crate::event_info!("factory reset: keys destroyed, configuration and spool erased");
        Ok(())
    }
}

fn unlock_error(error: UnlockError) -> ErrorCode {
    match error {
        UnlockError::WrongPassphrase => {
            crate::alerts::raise(homemx_status::alert::AlertKind::UnlockFailed, format_args!("unlock failed: wrong passphrase"));
            ErrorCode::WrongPassphrase
        }
        UnlockError::TooSoon { wait_seconds } => ErrorCode::RateLimited { retry_after_seconds: wait_seconds as u32 },
        UnlockError::NotProvisioned => ErrorCode::NotEnrolled,
        UnlockError::RecordTampered => {
            crate::alerts::raise(homemx_status::alert::AlertKind::UnlockFailed, format_args!("unlock refused: the key record was tampered with"));
            ErrorCode::DeviceFault
        }
        UnlockError::OtherChip => {
            crate::alerts::raise(
                homemx_status::alert::AlertKind::UnlockFailed,
                format_args!("unlock refused: the key store is bound to another chip (flash copied or moved from another board)"),
            );
            ErrorCode::OtherChip
        }
        UnlockError::ChipKey(error) => {
            crate::alerts::raise(
                homemx_status::alert::AlertKind::UnlockFailed,
                format_args!("unlock refused: the chip key could not be derived ({:?}); after a tamper event, reset the device", error),
            );
            ErrorCode::DeviceFault
        }
        _ => ErrorCode::DeviceFault,
    }
}

fn keystore_error(error: KeystoreError) -> ErrorCode {
    match error {
        KeystoreError::Locked => ErrorCode::Locked,
        KeystoreError::NotProvisioned => ErrorCode::NotEnrolled,
        KeystoreError::NotFactoryFresh => ErrorCode::AlreadyEnrolled,
        KeystoreError::EmptyPassphrase => ErrorCode::InvalidConfiguration,
        KeystoreError::Unlock(error) => unlock_error(error),
        KeystoreError::ChipKey(error) => unlock_error(UnlockError::ChipKey(error)),
        _ => ErrorCode::DeviceFault,
    }
}
