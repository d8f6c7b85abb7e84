//! The store service: the one owner of the [`Vault`] (the key store, and while unlocked the
//! encrypted key-value store and the mail spool). Nobody else names the vault.
//!
//! - **Services** (MX, delivery, fetch, DynDNS, NDNs, alerts, the status page) reach the open
//!   stores through [`open`], only while the device is unlocked. The guard holds the store:
//!   keep it across flash work only, never across network I/O. Whoever changes the spool's
//!   space (begins, commits, aborts or deletes a message) publishes its free bytes and the
//!   queue length ([`OpenGuard::publish_space`]; [`spool_free_bytes`], [`queued_messages`]: the
//!   session policy and `/health` read them without waiting for the store).
//! - **Provider connections** read their trust anchor and password through [`provider_login`].
//! - **The console** alone changes the device's state, through the one [`Lifecycle`] it is
//!   handed at boot: admin key, unlock, lock, configuration, credentials, trust anchors,
//!   factory reset. The vault's methods for those are private to this module.
//! - The lock state is published in [`crate::channels::DEVICE_STATE`] for whoever reacts to it.
//! - **The TLS identity** (`identity`): the store makes the device's key and self-signed
//!   certificate and keeps them; the console asks through the [`Lifecycle`] (after unlock and
//!   commit, `tls csr`, `tls install`), the courier through [`refresh_tls_identity`] (hourly and
//!   once the clock is set); the summary is read through [`tls_certificate`]. The key never
//!   leaves the store except as the signatures it makes.
//!
//! - **The chip's RAM erase at reset** is checked once at boot ([`check_hardware_ram_wipe`]):
//!   a chip that could erase its RAM at reset and is not set to never unlocks.
//!
//! Owns: the vault (`VAULT`), the published spool free bytes and queue length, the
//! lifecycle's taken flag and the RAM-wipe refusal. Calls: `alerts`,
//! `channels`, `event_log`, `random`, `stack`, `storage`, `wall_clock`.

mod identity;
mod vault;

use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::mutex::{MappedMutexGuard, Mutex, MutexGuard};
use homemx_keystore::KeystoreState;
use homemx_wire::config::ConfigItem;
use homemx_tls::Trust;
use homemx_wire::message::{Credential, ErrorCode, TlsService, TrustAnchorUpdate};

pub use identity::certificate as tls_certificate;
pub use identity::{host_name as tls_host_name, key_digests as tls_key_digests};
pub use identity::generation as tls_identity_generation;
pub use identity::check_expiry_alert as check_tls_expiry_alert;
pub use vault::{BoardChipKey, MailSpool, OpenStores, Settings};
use vault::Vault;

use crate::channels::{DeviceState, DEVICE_STATE};
use crate::random::DerivedRandom;
use crate::storage::FlashPartitions;

/// The one vault; `None` until [`mount`] (or when the flash could not be mounted).
static VAULT: Mutex<CriticalSectionRawMutex, Option<Vault>> = Mutex::new(None);

/// The spool's free bytes as last published (0 while locked).
static SPOOL_FREE_BYTES: AtomicU32 = AtomicU32::new(0);

/// The messages queued in the spool as last published (0 while locked).
static QUEUED_MESSAGES: AtomicU32 = AtomicU32::new(0);

/// Set once the [`Lifecycle`] was handed out.
static LIFECYCLE_TAKEN: AtomicBool = AtomicBool::new(false);

/// Set at boot when the chip could erase its RAM at every reset and is not set to
/// ([`check_hardware_ram_wipe`]): every unlock is refused until a reset finds it set.
static RAM_WIPE_NOT_SET: AtomicBool = AtomicBool::new(false);

/// Checks the chip's own RAM erase at reset (the board reads it, e.g. the H5's option bytes),
/// once at boot before the console runs: when the chip could erase its RAM and is not set to,
/// unlocking is refused from now on and the `ram_wipe_not_set` alert raised. A board without
/// such an option (QEMU) relies on the software wipe alone and raises nothing.
pub fn check_hardware_ram_wipe(wipe: homemx_board::HardwareRamWipe) {
    use homemx_board::HardwareRamWipe;
    match wipe {
        HardwareRamWipe::NotAvailable => defmt::info!("RAM wipe at reset: software only (the board has no option bytes for it)"),
        HardwareRamWipe::Set => defmt::info!("RAM wipe at reset: software, and the chip's option bytes"),
        HardwareRamWipe::NotSet { missing } => {
            RAM_WIPE_NOT_SET.store(true, Ordering::Relaxed);
            crate::alerts::raise(
                homemx_status::alert::AlertKind::RamWipeNotSet,
                format_args!("the chip does not erase its RAM at reset ({} not set); unlock refused", missing),
            );
        }
    }
}

/// Publishes the spool's free bytes and queue length (the one place that stores them); zero
/// for both without open stores.
fn publish_spool_space(stores: Option<&OpenStores>) {
    let (free, queued) = stores.map_or((0, 0), |stores| (stores.spool.free_bytes(), stores.spool.messages().count()));
    SPOOL_FREE_BYTES.store(free.min(u64::from(u32::MAX)) as u32, Ordering::Relaxed);
    QUEUED_MESSAGES.store(queued as u32, Ordering::Relaxed);
}

/// The messages queued in the spool as last published (0 while locked).
pub fn queued_messages() -> u32 {
    QUEUED_MESSAGES.load(Ordering::Relaxed)
}

/// The spool's free bytes as last published (0 while locked).
pub fn spool_free_bytes() -> u64 {
    u64::from(SPOOL_FREE_BYTES.load(Ordering::Relaxed))
}

fn device_state(vault: Option<&Vault>) -> DeviceState {
    match vault.map(Vault::state) {
        None | Some(KeystoreState::FactoryFresh) => DeviceState::Unprovisioned,
        Some(KeystoreState::Locked) => DeviceState::Locked,
        Some(KeystoreState::Unlocked) => DeviceState::Unlocked,
    }
}

/// Publishes the lock state and the spool's free bytes.
fn publish(vault: &mut Option<Vault>) {
    DEVICE_STATE.sender().send_if_modified(|state| {
        let now = device_state(vault.as_ref());
        let changed = *state != Some(now);
        *state = Some(now);
        changed
    });
    publish_spool_space(vault.as_mut().and_then(Vault::open_stores).map(|stores| &*stores));
}

/// Mounts the key store on the flash partitions (once, at boot, before any task uses the
/// store): the device is locked or factory-fresh afterwards.
pub async fn mount(partitions: FlashPartitions, chip_key: BoardChipKey, random: DerivedRandom) {
    let vault = match Vault::mount(partitions, chip_key, random).await {
        Ok(vault) => vault,
        Err(_) => {
            defmt::error!("storage: the key store could not be mounted; the device stays locked");
            return;
        }
    };
    defmt::info!(
        "storage: key store {}; {=u32} failed unlocks on record",
        match vault.state() {
            KeystoreState::FactoryFresh => "factory-fresh",
            KeystoreState::Locked => "locked",
            KeystoreState::Unlocked => "unlocked",
        },
        vault.failed_unlocks()
    );
    match vault.binding() {
        Some(homemx_keystore::Binding::Chip { .. }) => defmt::info!("storage: the key store is bound to this chip's key"),
        Some(homemx_keystore::Binding::NotBound) => defmt::info!("storage: the key store is not bound to a chip key"),
        None => {}
    }
    let mut slot = VAULT.lock().await;
    *slot = Some(vault);
    publish(&mut slot);
}

/// The open stores while the device is unlocked; the store is held until the guard drops.
pub struct OpenGuard(MappedMutexGuard<'static, CriticalSectionRawMutex, OpenStores>);

impl Deref for OpenGuard {
    type Target = OpenStores;
    fn deref(&self) -> &OpenStores {
        &self.0
    }
}

impl DerefMut for OpenGuard {
    fn deref_mut(&mut self) -> &mut OpenStores {
        &mut self.0
    }
}

impl OpenGuard {
    /// Publishes the spool's free bytes and queue length ([`spool_free_bytes`],
    /// [`queued_messages`]); call after a change of its space (a message begun, committed,
    /// aborted or deleted). Not on every drop of the guard: `free_bytes` walks every sector's
    /// state, and the sessions open the store once per chunk.
    pub fn publish_space(&self) {
        publish_spool_space(Some(&self.0));
    }
}

/// The open stores (settings and spool), or `None` while locked or unmounted.
pub async fn open() -> Option<OpenGuard> {
    let mut guard = VAULT.lock().await;
    guard.as_mut()?.open_stores()?;
    let stores = MutexGuard::map(guard, |vault| match vault.as_mut().and_then(Vault::open_stores) {
        Some(stores) => stores,
        // Checked above under the same lock.
        None => unreachable!(),
    });
    Some(OpenGuard(stores))
}

/// For a provider connection: the service's trust anchor (a CA certificate is copied into
/// `certificate`) and the password of `credential` (copied into `password`, which should be a
/// `SecretBytes`; its length returned). Each `None` while locked or unset.
pub async fn provider_login(
    service: TlsService,
    certificate: &mut [u8],
    credential: Option<(Credential, &mut [u8])>,
) -> (Option<TrustSource>, Option<usize>) {
    let mut guard = VAULT.lock().await;
    let Some(vault) = guard.as_mut() else {
        return (None, None);
    };
    let anchor = vault.trust_anchor(service, certificate).await;
    let password = match credential {
        Some((credential, out)) => vault.credential(credential, out).await,
        None => None,
    };
    (anchor, password)
}

/// A trust decision as loaded from the vault (owns nothing: a CA anchor's bytes are in the
/// TLS buffers' `anchor` field, `length` long).
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum TrustSource {
    /// A CA certificate of this many bytes sits in the TLS buffers' `anchor`.
    CaAnchor(usize),
    /// The server key's SPKI SHA-256.
    PinnedKey([u8; 32]),
}

impl TrustSource {
    /// Whether it can be used now: a CA anchor needs the wall clock for validity dates (the
    /// caller defers until SNTP has answered); a pinned key needs no time.
    pub fn usable_now(&self) -> bool {
        !matches!(self, TrustSource::CaAnchor(_)) || crate::wall_clock::unix_seconds().is_some()
    }

    /// The trust handed to the TLS provider; `anchor` holds a CA anchor's bytes.
    pub fn trust<'a>(&self, anchor: &'a [u8]) -> Trust<'a> {
        match *self {
            TrustSource::CaAnchor(length) => Trust::CaAnchor(&anchor[..length.min(anchor.len())]),
            TrustSource::PinnedKey(pin) => Trust::PinnedKey(pin),
        }
    }

    /// How the server was verified, for the log and the status page.
    pub fn description(&self) -> &'static str {
        match self {
            TrustSource::CaAnchor(_) => "CA anchor + host name",
            TrustSource::PinnedKey(_) => "pinned server key",
        }
    }
}

/// Makes the TLS identity's missing parts, renews the self-signed certificate when due and
/// publishes the summary (the courier's hourly job, and once the clock is set). Nothing while
/// locked.
pub async fn refresh_tls_identity() {
    let mut guard = VAULT.lock().await;
    let Some(vault) = guard.as_mut() else {
        return;
    };
    if vault.open_stores().is_none() {
        return;
    }
    if let Err(error) = vault.refresh_tls_identity().await {
        crate::event_warning!("tls: the identity could not be refreshed: {:?}", error);
    }
}

/// What the inbound TLS listener presents: the device's key and certificate chain (DER, leaf
/// first). `None` while locked or before the first certificate was made.
pub async fn tls_server_identity() -> Option<(homemx_tls::identity::DeviceKey, alloc::vec::Vec<u8>)> {
    let mut stores = open().await?;
    identity::server_identity(&mut stores.settings).await
}

/// The `[tls.acme]` account of the configuration (`None`: locked, unconfigured or none).
pub async fn acme_account() -> Option<homemx_wire::config::Acme> {
    let mut stores = open().await?;
    let (_, count) = stores.current_configuration().await.ok()??;
    for index in 0..count {
        if let Ok((_, ConfigItem::Acme(acme))) = stores.configuration_get(index).await {
            return Some(acme);
        }
    }
    None
}

/// The ACME account key (made and stored the first time) and the certificate's key (the TLS
/// identity's with `reuse_key`, else a new one); `None` while locked or on a storage fault.
pub async fn acme_keys(
    random: &mut rand_chacha::ChaCha20Rng,
    reuse_key: bool,
) -> Option<(homemx_tls::identity::DeviceKey, homemx_tls::identity::DeviceKey)> {
    let mut stores = open().await?;
    let account = identity::acme_account_key(&mut stores.settings, random).await.ok()?;
    let certificate = identity::acme_certificate_key(&mut stores.settings, random, reuse_key).await.ok()?;
    Some((account, certificate))
}

/// The dates of the CA-issued chain in use (`None`: self-signed or none, or locked).
pub async fn acme_current_validity() -> Option<(u64, u64)> {
    let mut stores = open().await?;
    identity::acme_current_validity(&mut stores.settings).await
}

/// The leaf (DER) of the CA-issued chain in use (`None`: self-signed or none, or locked).
pub async fn acme_current_leaf() -> Option<alloc::vec::Vec<u8>> {
    let mut stores = open().await?;
    identity::acme_current_leaf(&mut stores.settings).await
}

/// Installs an ACME-issued chain (DER, leaf first) as the identity's CA-issued chain, with its
/// own key when it is not the identity's (`reuse_key = false`).
pub async fn install_acme_chain(der: &[u8], new_key: Option<&homemx_tls::identity::DeviceKey>) -> Result<(), ErrorCode> {
    let mut stores = open().await.ok_or(ErrorCode::Locked)?;
    identity::install_acme_chain(&mut stores.settings, der, new_key).await
}

/// A mail user's password record as SMTP AUTH needs it.
pub struct MailUserLookup {
    /// The user's record; `None`: no such user.
    pub record: Option<homemx_credentials::PasswordRecord>,
    /// The iterations a check of an unknown name spends (as much as a real user's check).
    pub dummy_iterations: u32,
    /// The user's own hourly message limit, if set.
    pub messages_per_hour: Option<u16>,
}

/// Looks `name` (compared without ASCII case) up among the configured mail users. Every item of
/// the configuration is read whether the name is found or not, so the time taken does not tell
/// whether it exists. `None` while locked or unconfigured.
pub async fn mail_user(name: &[u8]) -> Option<MailUserLookup> {
    let mut stores = open().await?;
    let (_, count) = stores.current_configuration().await.ok()??;
    let mut found = None;
    // The largest of the records' counts (see `homemx_credentials::dummy_iterations`), one
    // record at a time rather than all 16 held at once.
    let mut dummy_iterations = None;
    for index in 0..count {
        if let Ok((_, ConfigItem::User(user))) = stores.configuration_get(index).await {
            if user.password.check().is_ok() {
                let iterations = homemx_credentials::dummy_iterations([&user.password]);
                dummy_iterations = Some(dummy_iterations.map_or(iterations, |most: u32| most.max(iterations)));
            }
            if found.is_none() && user.name.as_bytes().eq_ignore_ascii_case(name) {
                found = Some(user);
            }
        }
    }
    let dummy_iterations = dummy_iterations.unwrap_or(homemx_credentials::DEFAULT_ITERATIONS);
    Some(MailUserLookup {
        messages_per_hour: found.as_ref().and_then(|user| user.messages_per_hour),
        record: found.map(|user| user.password),
        dummy_iterations,
    })
}

/// For a provider login without a TLS anchor to load: the password of `credential`.
pub async fn provider_password(credential: Credential, password: &mut [u8]) -> Option<usize> {
    VAULT.lock().await.as_mut()?.credential(credential, password).await
}

/// What the console's `status` reports of the store.
pub struct StoreStatus {
    /// Factory-fresh (no admin key yet), locked or unlocked.
    pub state: homemx_wire::message::DeviceState,
    /// Whether a configuration was committed.
    pub configured: bool,
    /// Which provider credentials are set.
    pub credentials: homemx_wire::message::CredentialsPresent,
    /// Failed unlocks since the last success.
    pub failed_unlocks: u32,
    /// Seconds until the next unlock attempt is accepted.
    pub unlock_wait_seconds: u64,
}

/// The console's one handle on the device's state: only the console holds it (handed out
/// once, [`Lifecycle::take`]), so only the console unlocks, locks, configures and resets.
pub struct Lifecycle(());

impl Lifecycle {
    /// The one lifecycle handle; `None` if it was handed out already.
    pub fn take() -> Option<Lifecycle> {
        (!LIFECYCLE_TAKEN.swap(true, Ordering::Relaxed)).then_some(Lifecycle(()))
    }

    async fn with<R>(&mut self, work: impl AsyncFnOnce(&mut Vault) -> Result<R, ErrorCode>) -> Result<R, ErrorCode> {
        let mut guard = VAULT.lock().await;
        let result = match guard.as_mut() {
            Some(vault) => work(vault).await,
            None => Err(ErrorCode::DeviceFault),
        };
        publish(&mut guard);
        result
    }

    /// The enrolled admin key (from flash, or enrolled in this boot before the first unlock).
    pub async fn admin_public_key(&mut self) -> Option<[u8; 32]> {
        VAULT.lock().await.as_ref().and_then(Vault::admin_public_key)
    }

    /// Enrols (factory-fresh) or rotates (unlocked) the admin key.
    pub async fn store_admin_key(&mut self, key: [u8; 32]) -> Result<(), ErrorCode> {
        self.with(async |vault| vault.store_admin_key(key).await).await
    }

    /// Unlocks with the passphrase and opens the stores, then runs `after` on them with the
    /// store still held (nothing else sees the stores before it is done); returns whether the
    /// device is unlocked afterwards beside the result.
    pub async fn unlock(&mut self, passphrase: &[u8], after: impl AsyncFnOnce(&mut OpenStores)) -> (Result<(), ErrorCode>, bool) {
        if RAM_WIPE_NOT_SET.load(Ordering::Relaxed) {
            crate::alerts::raise(homemx_status::alert::AlertKind::RamWipeNotSet, format_args!("unlock refused: the chip does not erase its RAM at reset"));
            return (Err(ErrorCode::RamWipeNotSet), false);
        }
        let mut unlocked = false;
        let result = self
            .with(async |vault| {
                // Both in frames of their own: inlined, the key derivation's, the stores' mount's
                // and `after`'s temporaries shared this poll's frame (3 KB), under the stores'
                // building (`vault::build_settings`), on the deepest stack path of an unlock.
                let result = crate::stack::own_frame(vault.unlock(passphrase)).await;
                unlocked = vault.state() == KeystoreState::Unlocked;
                if result.is_ok() {
                    if let Some(stores) = vault.open_stores() {
                        crate::stack::own_frame(after(stores)).await;
                    }
                }
                result
            })
            .await;
        (result, unlocked)
    }

    /// Locks: the open stores are dropped (their keys wiped) and the key store locked.
    pub async fn lock(&mut self) -> Result<(), ErrorCode> {
        self.with(async |vault| {
            vault.lock();
            Ok(())
        })
        .await
    }

    /// The store's part of the console's `status`.
    pub async fn status(&mut self) -> Result<StoreStatus, ErrorCode> {
        use homemx_wire::message::{CredentialsPresent, DeviceState as WireState};
        self.with(async |vault| {
            let state = match vault.state() {
                KeystoreState::FactoryFresh if vault.admin_public_key().is_none() => WireState::FactoryFresh,
                KeystoreState::Unlocked => WireState::Unlocked,
                _ => WireState::Locked,
            };
            Ok(StoreStatus {
                state,
                configured: matches!(vault.current_configuration().await, Ok(Some(_))),
                credentials: CredentialsPresent {
                    smarthost_password: vault.has_credential(Credential::SmarthostPassword).await,
                    backup_mx_password: vault.has_credential(Credential::BackupMxPassword).await,
                    dyndns_password: vault.has_credential(Credential::DynDnsPassword).await,
                },
                failed_unlocks: vault.failed_unlocks(),
                unlock_wait_seconds: vault.unlock_wait_seconds(),
            })
        })
        .await
    }

    /// Starts staging a new configuration generation.
    pub async fn configuration_begin(&mut self) -> Result<(), ErrorCode> {
        self.with(async |vault| vault.configuration_begin().await).await
    }

    /// Stores one item of the staged configuration.
    pub async fn configuration_put(&mut self, item: &ConfigItem) -> Result<(), ErrorCode> {
        self.with(async |vault| vault.configuration_put(item).await).await
    }

    /// Makes the staged configuration current, then runs `after` on the open stores with the
    /// store still held.
    pub async fn configuration_commit(&mut self, item_count: u16, after: impl AsyncFnOnce(&mut OpenStores)) -> Result<(), ErrorCode> {
        self.with(async |vault| {
            vault.configuration_commit(item_count).await?;
            if let Some(stores) = vault.open_stores() {
                after(stores).await;
            }
            Ok(())
        })
        .await
    }

    /// Item `index` of the current configuration and the item count.
    pub async fn configuration_get(&mut self, index: u16) -> Result<(u16, ConfigItem), ErrorCode> {
        self.with(async |vault| vault.configuration_get(index).await).await
    }

    /// Stores a write-only credential.
    pub async fn set_credential(&mut self, credential: Credential, secret: &[u8]) -> Result<(), ErrorCode> {
        self.with(async |vault| vault.set_credential(credential, secret).await).await
    }

    /// Stores a pin, or one chunk of a CA certificate.
    pub async fn set_trust_anchor(&mut self, update: &TrustAnchorUpdate) -> Result<(), ErrorCode> {
        self.with(async |vault| vault.set_trust_anchor(update).await).await
    }

    /// Makes the TLS identity's missing parts (after unlock and commit: the key at once, the
    /// self-signed certificate if the clock is set).
    pub async fn refresh_tls_identity(&mut self) -> Result<(), ErrorCode> {
        self.with(async |vault| vault.refresh_tls_identity().await).await
    }

    /// The certificate request for the device's TLS key and host name.
    pub async fn tls_certificate_request(&mut self) -> Result<heapless::Vec<u8, { homemx_wire::message::MAX_CERTIFICATE_REQUEST }>, ErrorCode> {
        self.with(async |vault| vault.tls_certificate_request().await).await
    }

    /// One chunk of a CA-issued chain; the last one checks and installs it.
    pub async fn tls_install(&mut self, chunk: &homemx_wire::message::ChainChunk) -> Result<(), ErrorCode> {
        self.with(async |vault| vault.tls_install(chunk).await).await
    }

    /// Destroys the wrapped data key and erases the key-value store and the spool.
    pub async fn factory_reset(&mut self) -> Result<(), ErrorCode> {
        self.with(async |vault| vault.factory_reset().await).await
    }
}
