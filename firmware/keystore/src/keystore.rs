//! The key store state machine over a NOR flash region: mount, initialise, unlock, lock,
//! change the passphrase, rotate the admin key, factory reset.
//!
//! The region is a run of whole erase sectors ("slots", at least two; the firmware gives four).
//! At most one slot holds the current record (plus its attempt log); a rewrite programs the
//! next slot in round-robin order and only then erases the old one, so a power cut anywhere
//! leaves the old or the new record valid (README: "Power cuts"). Mount picks the valid record
//! with the highest sequence number and erases any older valid one.
//!
//! On a board with a chip key the records are bound to it ([`crate::chip_binding`] has the
//! derivation and the policy: bound records need the same chip; an unbound record still opens
//! and is bound by its first unlock).

use crate::attempt_log::{unlock_delay, word_is_used, AttemptLog, AttemptLogScanner};
use crate::chip_binding::{bind_key_encryption_key, bind_passphrase_check, chip_fingerprint, derive_chip_secret};
use crate::error::{KeystoreError, UnlockError};
use crate::kdf::{derive_keys, DEFAULT_ITERATIONS, MAX_ITERATIONS, PASSPHRASE_CHECK_LENGTH, SALT_LENGTH};
use crate::record::{associated_data, Binding, KeyRecord, ADMIN_PUBLIC_KEY_LENGTH, RECORD_AREA_LENGTH, RECORD_LENGTH};
use crate::secret::{constant_time_equal, scrub_stack, DataKey, KeyEncryptionKey, SecretBytes, KEY_LENGTH};
use crate::wrap::{unwrap_data_key, wrap_data_key, NONCE_LENGTH};
use crate::RandomSource;
use core::ops::Range;
use embedded_storage_async::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind};
use homemx_board::{ChipKey, ChipKeyError, NoChipKey};

/// Largest supported flash write size (one attempt-log word).
const MAX_WRITE_SIZE: usize = 32;
/// Bytes read at a time (record area, attempt log, erased checks).
const READ_CHUNK: usize = 256;

/// Settings for new records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeystoreConfig {
    /// PBKDF2 iterations for records written from now on ([`DEFAULT_ITERATIONS`] on the
    /// device; host tests use small counts). Existing records keep theirs.
    pub iterations: u32,
}

impl Default for KeystoreConfig {
    fn default() -> Self {
        Self { iterations: DEFAULT_ITERATIONS }
    }
}

/// Where the key store stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeystoreState {
    /// No valid record: waiting for enrolment (`initialise`).
    FactoryFresh,
    /// Provisioned; no key in RAM (after every reset, and after `lock`).
    Locked,
    /// The key-encryption key and the data key are in RAM, in the key store (lent out).
    Unlocked,
}

/// The record in charge, where it is, and its attempt log.
struct Current {
    slot: u32,
    record: KeyRecord,
    log: AttemptLog,
}

/// The device key store (see the crate README for the whole story).
///
/// Generic over the board's async NOR flash, entropy source and chip key (`NoChipKey` when
/// mounted with [`Keystore::mount`]: records are not bound). Time is the caller's monotonic
/// clock in seconds since boot; the store keeps the time of the last failure in RAM and, after
/// a reset, counts from boot (time 0): a device with `n` persisted failures accepts its first
/// attempt `unlock_delay(n)` seconds after boot.
pub struct Keystore<F, R, C = NoChipKey> {
    flash: F,
    region_start: u32,
    slot_count: u32,
    random: R,
    chip_key: C,
    config: KeystoreConfig,
    current: Option<Current>,
    /// While unlocked: the key-encryption key and the data key, kept here and only here
    /// (derived and decrypted in place, lent out by reference, wiped on lock).
    key_encryption_key: KeyEncryptionKey,
    data_key: DataKey,
    unlocked: bool,
    last_failure_at: Option<u64>,
    needs_reload: bool,
}

fn flash_error<E: NorFlashError>(error: E) -> NorFlashErrorKind {
    error.kind()
}

impl<F: NorFlash, R: RandomSource> Keystore<F, R, NoChipKey> {
    /// Mounts the key store on a board without a chip key (see [`Keystore::mount_with_chip_key`]):
    /// its records are not bound, and a bound record never opens.
    pub async fn mount(
        flash: F,
        region: Range<u32>,
        random: R,
        config: KeystoreConfig,
    ) -> Result<Self, KeystoreError> {
        Self::mount_with_chip_key(flash, region, random, NoChipKey, config).await
    }
}

impl<F: NorFlash, R: RandomSource, C: ChipKey> Keystore<F, R, C> {
    /// Mounts the key store on `region` of `flash` (after every reset): finds the newest valid
    /// record, erases older ones left by an interrupted rewrite, and reads the attempt log.
    /// The result is `FactoryFresh` or `Locked`. Arbitrary flash contents never panic.
    /// `chip_key` is the board's ([`crate::chip_binding`]): records written are bound to it
    /// when it is available.
    pub async fn mount_with_chip_key(
        flash: F,
        region: Range<u32>,
        random: R,
        chip_key: C,
        config: KeystoreConfig,
    ) -> Result<Self, KeystoreError> {
        let sector = F::ERASE_SIZE;
        let write = F::WRITE_SIZE;
        let read = F::READ_SIZE;
        let geometry_ok = sector >= 2 * READ_CHUNK
            && sector.is_multiple_of(READ_CHUNK)
            && write > 0
            && write <= MAX_WRITE_SIZE
            && READ_CHUNK.is_multiple_of(2 * write)
            && read > 0
            && READ_CHUNK.is_multiple_of(read);
        let length = region.end.saturating_sub(region.start);
        let region_ok = region.start.is_multiple_of(sector as u32)
            && length.is_multiple_of(sector as u32)
            && length / sector as u32 >= 2
            && region.end as usize <= flash.capacity();
        if !geometry_ok || !region_ok {
            return Err(KeystoreError::InvalidRegion);
        }
        if config.iterations == 0 || config.iterations > MAX_ITERATIONS {
            return Err(KeystoreError::InvalidIterations);
        }
        let mut store = Self {
            flash,
            region_start: region.start,
            slot_count: length / sector as u32,
            random,
            chip_key,
            config,
            current: None,
            key_encryption_key: KeyEncryptionKey::zeroed(),
            data_key: DataKey::zeroed(),
            unlocked: false,
            last_failure_at: None,
            needs_reload: true,
        };
        store.reload().await?;
        Ok(store)
    }

    /// The current state.
    pub fn state(&self) -> KeystoreState {
        match (&self.current, self.unlocked) {
            (None, _) => KeystoreState::FactoryFresh,
            (Some(_), false) => KeystoreState::Locked,
            (Some(_), true) => KeystoreState::Unlocked,
        }
    }

    /// The enrolled admin public key, `None` when factory-fresh.
    ///
    /// While locked this is what the flash says: it is authenticated only by the next
    /// successful unlock (a swapped key makes that unlock fail with `RecordTampered`). Once
    /// unlocked, it is the authenticated key.
    pub fn admin_public_key(&self) -> Option<[u8; ADMIN_PUBLIC_KEY_LENGTH]> {
        self.current.as_ref().map(|current| current.record.admin_public_key)
    }

    /// The current record's binding (`None` when factory-fresh): what the flash says while
    /// locked, authenticated once unlocked.
    pub fn binding(&self) -> Option<Binding> {
        self.current.as_ref().map(|current| current.record.binding)
    }

    /// Consecutive failed unlock attempts (persisted; survives reset).
    pub fn failed_attempts(&self) -> u32 {
        self.current.as_ref().map_or(0, |current| current.log.failures)
    }

    /// Seconds until an unlock attempt is accepted at `now_seconds` (0: now).
    pub fn unlock_wait_seconds(&self, now_seconds: u64) -> u64 {
        let failures = self.failed_attempts();
        if failures == 0 {
            return 0;
        }
        let reference = self.last_failure_at.unwrap_or(0);
        reference.saturating_add(unlock_delay(failures)).saturating_sub(now_seconds)
    }

    /// Attempt-log entries per sector (attempts before the record moves to the next slot).
    pub fn attempt_log_capacity(&self) -> u32 {
        ((F::ERASE_SIZE - RECORD_AREA_LENGTH) / (2 * F::WRITE_SIZE)) as u32
    }

    /// Enrolment on a factory-fresh device: draws a random data key and salt, derives the
    /// key-encryption key from `passphrase` (one KDF run), wraps the data key with
    /// `admin_public_key` bound into the associated data, and stores the record.
    ///
    /// Leaves the store **unlocked** and lends out the data key (kept in the store), because
    /// provisioning goes on to write the configuration; `lock()` or a reset makes it
    /// provisioned-locked.
    pub async fn initialise(
        &mut self,
        passphrase: &[u8],
        admin_public_key: [u8; ADMIN_PUBLIC_KEY_LENGTH],
    ) -> Result<&DataKey, KeystoreError> {
        self.reload_if_needed().await?;
        if self.current.is_some() {
            return Err(KeystoreError::NotFactoryFresh);
        }
        if passphrase.is_empty() {
            return Err(KeystoreError::EmptyPassphrase);
        }
        let mut chip_secret = SecretBytes::<KEY_LENGTH>::zeroed();
        let binding = self.new_binding(&mut chip_secret).map_err(KeystoreError::ChipKey)?;
        self.random.fill_bytes(self.data_key.bytes_mut());
        let mut salt = [0u8; SALT_LENGTH];
        self.random.fill_bytes(&mut salt);
        let mut passphrase_key = KeyEncryptionKey::zeroed();
        let passphrase_check = derive_keys(passphrase, &salt, self.config.iterations, &mut passphrase_key).await;
        let passphrase_check =
            finish_keys(binding, &chip_secret, &passphrase_key, passphrase_check, &mut self.key_encryption_key);
        drop((passphrase_key, chip_secret));
        let record = seal_record(
            &mut self.random,
            &self.key_encryption_key,
            passphrase_check,
            1,
            self.config.iterations,
            salt,
            admin_public_key,
            binding,
            &self.data_key,
        );
        if let Err(error) = self.commit(record).await {
            self.wipe_keys();
            return Err(error);
        }
        self.unlocked = true;
        self.last_failure_at = None;
        Ok(&self.data_key)
    }

    /// Unlocks with `passphrase` at the caller's monotonic time `now_seconds` and lends out
    /// the data key (kept in the store until `lock`). Refuses with `TooSoon` (not counted) while the delay for the persisted
    /// failure count runs; otherwise logs the attempt on flash *before* running the KDF, and
    /// marks it successful only once the passphrase is proven right.
    pub async fn unlock(
        &mut self,
        passphrase: &[u8],
        now_seconds: u64,
    ) -> Result<&DataKey, UnlockError> {
        self.reload_if_needed().await.map_err(unlock_error)?;
        match self.state() {
            KeystoreState::FactoryFresh => return Err(UnlockError::NotProvisioned),
            KeystoreState::Unlocked => return Err(UnlockError::WrongState),
            KeystoreState::Locked => {}
        }
        if let Err(error) = self.verify_passphrase(passphrase, now_seconds, None).await {
            self.wipe_keys();
            return Err(error);
        }
        self.unlocked = true;
        // A flash error here faults the store, like any rewrite; any error locks it again.
        if let Err(error) = self.bind_if_not_bound().await {
            self.wipe_keys();
            return Err(unlock_error(error));
        }
        Ok(&self.data_key)
    }

    /// Locks: wipes the key-encryption key and the data key. The firmware must drop
    /// everything it built from the data key (the spool).
    pub fn lock(&mut self) {
        self.wipe_keys();
    }

    /// Changes the passphrase (only while unlocked): checks `old` like an unlock attempt
    /// (rate-limited and counted), draws a new salt, derives from `new` and rewrites the
    /// record; the data key stays the same. Two KDF runs. A power cut leaves the old or the
    /// new passphrase working, never neither; the old record is erased once the new one is
    /// programmed and verified.
    pub async fn change_passphrase(
        &mut self,
        old: &[u8],
        new: &[u8],
        now_seconds: u64,
    ) -> Result<(), KeystoreError> {
        self.reload_if_needed().await?;
        self.require_unlocked()?;
        if new.is_empty() {
            return Err(KeystoreError::EmptyPassphrase);
        }
        // The old passphrase's keys go to scratch holders (wiped when they drop): the kept
        // keys must survive a wrong `old`.
        let mut old_key_encryption_key = KeyEncryptionKey::zeroed();
        let mut old_data_key = DataKey::zeroed();
        self.verify_passphrase(old, now_seconds, Some((&mut old_key_encryption_key, &mut old_data_key)))
            .await?;
        drop((old_key_encryption_key, old_data_key));
        let mut chip_secret = SecretBytes::<KEY_LENGTH>::zeroed();
        let binding = self.new_binding(&mut chip_secret).map_err(KeystoreError::ChipKey)?;
        let current = self.current.as_ref().ok_or(KeystoreError::NotProvisioned)?;
        let sequence = next_sequence(&current.record)?;
        let admin_public_key = current.record.admin_public_key;
        let mut salt = [0u8; SALT_LENGTH];
        self.random.fill_bytes(&mut salt);
        let mut passphrase_key = KeyEncryptionKey::zeroed();
        let passphrase_check = derive_keys(new, &salt, self.config.iterations, &mut passphrase_key).await;
        let mut new_key_encryption_key = KeyEncryptionKey::zeroed();
        let passphrase_check =
            finish_keys(binding, &chip_secret, &passphrase_key, passphrase_check, &mut new_key_encryption_key);
        drop((passphrase_key, chip_secret));
        let record = seal_record(
            &mut self.random,
            &new_key_encryption_key,
            passphrase_check,
            sequence,
            self.config.iterations,
            salt,
            admin_public_key,
            binding,
            &self.data_key,
        );
        self.commit(record).await?;
        self.key_encryption_key.bytes_mut().copy_from_slice(new_key_encryption_key.bytes());
        Ok(())
    }

    /// Replaces the enrolled admin public key (only while unlocked): re-wraps the data key
    /// under the kept key-encryption key with the new key in the associated data. No KDF run.
    /// Power-safe like `change_passphrase`.
    pub async fn rotate_admin_key(
        &mut self,
        new_public_key: [u8; ADMIN_PUBLIC_KEY_LENGTH],
    ) -> Result<(), KeystoreError> {
        self.reload_if_needed().await?;
        self.require_unlocked()?;
        let Some(current) = self.current.as_ref() else {
            return Err(KeystoreError::Locked);
        };
        let record = &current.record;
        let mut nonce = [0u8; NONCE_LENGTH];
        self.random.fill_bytes(&mut nonce);
        let associated = associated_data(record.iterations, &record.salt, &new_public_key, record.binding);
        let (wrapped_data_key, tag) =
            wrap_data_key(&self.key_encryption_key, &nonce, associated.as_bytes(), &self.data_key);
        let new_record = KeyRecord {
            binding: record.binding,
            sequence: next_sequence(record)?,
            iterations: record.iterations,
            carried_failures: 0,
            salt: record.salt,
            nonce,
            admin_public_key: new_public_key,
            wrapped_data_key,
            tag,
            passphrase_check: record.passphrase_check,
        };
        self.commit(new_record).await
    }

    /// Erases every slot, the current record last: the wrapped data key is gone, so whatever
    /// it encrypted (the spool) can never be read again. Works in any state; leaves the store
    /// factory-fresh. A power cut before the last erase leaves the device provisioned (repeat
    /// the reset); a torn last erase leaves no valid record.
    pub async fn factory_reset(&mut self) -> Result<(), KeystoreError> {
        self.wipe_keys();
        if self.needs_reload {
            // Best effort: find the true current slot so it is erased last.
            let _ = self.reload().await;
        }
        let current_slot = self.current.as_ref().map(|current| current.slot);
        let result: Result<(), NorFlashErrorKind> = async {
            for slot in 0..self.slot_count {
                if Some(slot) != current_slot {
                    self.erase_if_needed(slot).await?;
                }
            }
            if let Some(slot) = current_slot {
                self.erase_slot(slot).await?;
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                self.current = None;
                self.last_failure_at = None;
                self.needs_reload = false;
                Ok(())
            }
            Err(kind) => {
                self.fault();
                Err(KeystoreError::Flash(kind))
            }
        }
    }

    /// Gives back the flash and the random source (tests "reboot" by mounting them again).
    pub fn into_parts(self) -> (F, R) {
        (self.flash, self.random)
    }

    // ---- internals ----

    fn require_unlocked(&self) -> Result<(), KeystoreError> {
        match self.state() {
            KeystoreState::FactoryFresh => Err(KeystoreError::NotProvisioned),
            KeystoreState::Locked => Err(KeystoreError::Locked),
            KeystoreState::Unlocked => Ok(()),
        }
    }

    /// Wipes the kept keys; the store is locked (or factory-fresh) afterwards.
    fn wipe_keys(&mut self) {
        self.unlocked = false;
        self.key_encryption_key.wipe();
        self.data_key.wipe();
    }

    /// The rate-limited, logged passphrase check shared by `unlock` and `change_passphrase`:
    /// derives the key-encryption key and decrypts the data key in place, into the kept keys
    /// (`scratch` `None`) or into the caller's holders. On an error the caller wipes them.
    async fn verify_passphrase(
        &mut self,
        passphrase: &[u8],
        now_seconds: u64,
        scratch: Option<(&mut KeyEncryptionKey, &mut DataKey)>,
    ) -> Result<(), UnlockError> {
        if self.current.is_none() {
            return Err(UnlockError::NotProvisioned);
        }
        let wait_seconds = self.unlock_wait_seconds(now_seconds);
        if wait_seconds > 0 {
            return Err(UnlockError::TooSoon { wait_seconds });
        }
        // A bound record: this chip's key first (no passphrase is tried, nothing is counted).
        let mut chip_secret = SecretBytes::<KEY_LENGTH>::zeroed();
        let binding = self.current.as_ref().map_or(Binding::NotBound, |current| current.record.binding);
        if let Binding::Chip { fingerprint } = binding {
            derive_chip_secret(&mut self.chip_key, &mut chip_secret).map_err(UnlockError::ChipKey)?;
            if !constant_time_equal(&chip_fingerprint(&chip_secret), &fingerprint) {
                return Err(UnlockError::OtherChip);
            }
        }
        let entry = self.log_attempt().await?;
        let Some(current) = self.current.as_ref() else {
            return Err(UnlockError::NotProvisioned);
        };
        let record = &current.record;
        let (key_encryption_key, data_key) = match scratch {
            Some(holders) => holders,
            None => (&mut self.key_encryption_key, &mut self.data_key),
        };
        let mut passphrase_key = KeyEncryptionKey::zeroed();
        let passphrase_check = derive_keys(passphrase, &record.salt, record.iterations, &mut passphrase_key).await;
        let passphrase_check = finish_keys(record.binding, &chip_secret, &passphrase_key, passphrase_check, key_encryption_key);
        drop((passphrase_key, chip_secret));
        if !constant_time_equal(&passphrase_check, &record.passphrase_check) {
            self.last_failure_at = Some(now_seconds);
            return Err(UnlockError::WrongPassphrase);
        }
        if !unwrap_data_key(
            key_encryption_key,
            &record.nonce,
            record.associated_data().as_bytes(),
            &record.wrapped_data_key,
            &record.tag,
            data_key,
        ) {
            self.last_failure_at = Some(now_seconds);
            return Err(UnlockError::RecordTampered);
        }
        self.log_success(entry).await?;
        self.last_failure_at = None;
        Ok(())
    }

    /// The binding of a record written now: bound to the chip key (derived into `chip_secret`)
    /// when the board has one, never falling back to unbound if it fails.
    fn new_binding(&mut self, chip_secret: &mut SecretBytes<KEY_LENGTH>) -> Result<Binding, ChipKeyError> {
        if !self.chip_key.is_available() {
            return Ok(Binding::NotBound);
        }
        derive_chip_secret(&mut self.chip_key, chip_secret)?;
        Ok(Binding::Chip { fingerprint: chip_fingerprint(chip_secret) })
    }

    /// Just unlocked an unbound record on a board with a chip key: re-seals it bound (one
    /// rewrite; see [`crate::chip_binding`]). If the chip refuses, the record stays as it was
    /// and the next unlock tries again.
    async fn bind_if_not_bound(&mut self) -> Result<(), KeystoreError> {
        let not_bound = self.current.as_ref().is_some_and(|current| current.record.binding == Binding::NotBound);
        if !not_bound || !self.chip_key.is_available() {
            return Ok(());
        }
        let mut chip_secret = SecretBytes::<KEY_LENGTH>::zeroed();
        let Ok(binding) = self.new_binding(&mut chip_secret) else {
            return Ok(());
        };
        let Some(current) = self.current.as_ref() else {
            return Ok(());
        };
        let record = &current.record;
        // Unbound: the kept key is the passphrase's key, the stored check the passphrase check.
        let mut bound_key = KeyEncryptionKey::zeroed();
        let passphrase_check =
            finish_keys(binding, &chip_secret, &self.key_encryption_key, record.passphrase_check, &mut bound_key);
        drop(chip_secret);
        let bound_record = seal_record(
            &mut self.random,
            &bound_key,
            passphrase_check,
            next_sequence(record)?,
            record.iterations,
            record.salt,
            record.admin_public_key,
            binding,
            &self.data_key,
        );
        self.commit(bound_record).await?;
        self.key_encryption_key.bytes_mut().copy_from_slice(bound_key.bytes());
        Ok(())
    }

    /// Logs an attempt (moving the record to the next slot first if the log is full) and
    /// counts it as a failure until `log_success`. Returns the entry index.
    async fn log_attempt(&mut self) -> Result<u32, UnlockError> {
        let capacity = self.attempt_log_capacity();
        let Some(current) = self.current.as_ref() else {
            return Err(UnlockError::NotProvisioned);
        };
        if current.log.next_entry >= capacity {
            let mut moved = current.record.clone();
            moved.sequence = next_sequence(&moved).map_err(|_| UnlockError::RecordTampered)?;
            moved.carried_failures = current.log.failures;
            self.commit(moved).await.map_err(unlock_error)?;
        }
        let Some(current) = self.current.as_mut() else {
            return Err(UnlockError::NotProvisioned);
        };
        let entry = current.log.next_entry;
        let address = entry_address(self.region_start, F::ERASE_SIZE, current.slot, entry, F::WRITE_SIZE);
        // Count first: even a failed or torn program is an attempt that may have happened.
        current.log.next_entry = entry + 1;
        current.log.failures = current.log.failures.saturating_add(1);
        let zeros = [0u8; MAX_WRITE_SIZE];
        if let Err(error) = self.flash.write(address, &zeros[..F::WRITE_SIZE]).await {
            self.fault();
            return Err(UnlockError::Flash(flash_error(error)));
        }
        Ok(entry)
    }

    /// Marks attempt `entry` successful: the failure count is back to zero.
    async fn log_success(&mut self, entry: u32) -> Result<(), UnlockError> {
        let Some(slot) = self.current.as_ref().map(|current| current.slot) else {
            return Err(UnlockError::NotProvisioned);
        };
        let address = entry_address(self.region_start, F::ERASE_SIZE, slot, entry, F::WRITE_SIZE)
            + F::WRITE_SIZE as u32;
        let mut word = [0u8; MAX_WRITE_SIZE];
        let result: Result<(), F::Error> = async {
            self.flash.read(address, &mut word[..F::WRITE_SIZE]).await?;
            if !word_is_used(&word[..F::WRITE_SIZE]) {
                self.flash.write(address, &[0u8; MAX_WRITE_SIZE][..F::WRITE_SIZE]).await?;
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            self.fault();
            return Err(UnlockError::Flash(flash_error(error)));
        }
        if let Some(current) = self.current.as_mut() {
            current.log.failures = 0;
        }
        Ok(())
    }

    /// Programs `record` into the next slot, verifies it, erases the old slot, and makes it
    /// current (with a fresh attempt log). On a flash error the store locks and reloads later.
    async fn commit(&mut self, record: KeyRecord) -> Result<(), KeystoreError> {
        let old_slot = self.current.as_ref().map(|current| current.slot);
        let target = old_slot.map_or(0, |slot| (slot + 1) % self.slot_count);
        let result = self.program_record(target, &record).await;
        let result = match result {
            Ok(()) => match old_slot {
                Some(slot) => self.erase_slot(slot).await.map_err(KeystoreError::Flash),
                None => Ok(()),
            },
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            self.fault();
            return Err(error);
        }
        let log = AttemptLog { failures: record.carried_failures, next_entry: 0 };
        self.current = Some(Current { slot: target, record, log });
        Ok(())
    }

    async fn program_record(&mut self, slot: u32, record: &KeyRecord) -> Result<(), KeystoreError> {
        self.erase_if_needed(slot).await.map_err(KeystoreError::Flash)?;
        let mut buffer = [0xFFu8; RECORD_AREA_LENGTH];
        buffer[..RECORD_LENGTH].copy_from_slice(&record.encode());
        let length = RECORD_LENGTH.div_ceil(F::WRITE_SIZE) * F::WRITE_SIZE;
        let address = self.slot_address(slot);
        self.flash
            .write(address, &buffer[..length])
            .await
            .map_err(|error| KeystoreError::Flash(flash_error(error)))?;
        let mut check = [0u8; RECORD_AREA_LENGTH];
        self.flash
            .read(address, &mut check)
            .await
            .map_err(|error| KeystoreError::Flash(flash_error(error)))?;
        if KeyRecord::decode(&check).as_ref() != Some(record) {
            return Err(KeystoreError::VerifyFailed);
        }
        Ok(())
    }

    /// After a flash error: lock, and rebuild the RAM state from flash before the next use.
    fn fault(&mut self) {
        self.wipe_keys();
        self.needs_reload = true;
    }

    async fn reload_if_needed(&mut self) -> Result<(), KeystoreError> {
        if self.needs_reload {
            self.reload().await?;
        }
        Ok(())
    }

    /// Rebuilds the RAM state from flash (see the module doc).
    async fn reload(&mut self) -> Result<(), KeystoreError> {
        self.wipe_keys();
        let mut best: Option<(u32, KeyRecord)> = None;
        for slot in 0..self.slot_count {
            if let Some(record) = self.read_record(slot).await? {
                if best.as_ref().is_none_or(|(_, kept)| record.sequence > kept.sequence) {
                    best = Some((slot, record));
                }
            }
        }
        if let Some((best_slot, _)) = &best {
            for slot in 0..self.slot_count {
                if slot != *best_slot && self.read_record(slot).await?.is_some() {
                    // An older record left by an interrupted rewrite (possibly under an old
                    // passphrase or admin key): erase it.
                    self.erase_slot(slot).await.map_err(KeystoreError::Flash)?;
                }
            }
        }
        self.current = match best {
            Some((slot, record)) => {
                let log = self.scan_attempt_log(slot, record.carried_failures).await?;
                Some(Current { slot, record, log })
            }
            None => None,
        };
        self.needs_reload = false;
        Ok(())
    }

    async fn read_record(&mut self, slot: u32) -> Result<Option<KeyRecord>, KeystoreError> {
        let mut buffer = [0u8; RECORD_AREA_LENGTH];
        self.flash
            .read(self.slot_address(slot), &mut buffer)
            .await
            .map_err(|error| KeystoreError::Flash(flash_error(error)))?;
        Ok(KeyRecord::decode(&buffer))
    }

    async fn scan_attempt_log(
        &mut self,
        slot: u32,
        carried_failures: u32,
    ) -> Result<AttemptLog, KeystoreError> {
        let mut scanner = AttemptLogScanner::new(carried_failures);
        let entry_length = 2 * F::WRITE_SIZE;
        let mut buffer = [0u8; READ_CHUNK];
        let mut entry = 0u32;
        let mut offset = RECORD_AREA_LENGTH;
        while offset < F::ERASE_SIZE {
            self.flash
                .read(self.slot_address(slot) + offset as u32, &mut buffer)
                .await
                .map_err(|error| KeystoreError::Flash(flash_error(error)))?;
            for words in buffer.chunks_exact(entry_length) {
                let (attempt, success) = words.split_at(F::WRITE_SIZE);
                scanner.observe(entry, word_is_used(attempt), word_is_used(success));
                entry += 1;
            }
            offset += READ_CHUNK;
        }
        Ok(scanner.finish())
    }

    async fn erase_if_needed(&mut self, slot: u32) -> Result<(), NorFlashErrorKind> {
        let start = self.slot_address(slot);
        let mut buffer = [0u8; READ_CHUNK];
        let mut offset = 0;
        while offset < F::ERASE_SIZE {
            self.flash.read(start + offset as u32, &mut buffer).await.map_err(flash_error)?;
            if buffer.iter().any(|&byte| byte != 0xFF) {
                return self.erase_slot(slot).await;
            }
            offset += READ_CHUNK;
        }
        Ok(())
    }

    async fn erase_slot(&mut self, slot: u32) -> Result<(), NorFlashErrorKind> {
        let start = self.slot_address(slot);
        self.flash.erase(start, start + F::ERASE_SIZE as u32).await.map_err(flash_error)
    }

    fn slot_address(&self, slot: u32) -> u32 {
        self.region_start + slot * F::ERASE_SIZE as u32
    }
}

/// Address of the attempt word of log entry `entry` in `slot` (the success word follows).
fn entry_address(region_start: u32, erase_size: usize, slot: u32, entry: u32, write_size: usize) -> u32 {
    region_start
        + slot * erase_size as u32
        + RECORD_AREA_LENGTH as u32
        + entry * 2 * write_size as u32
}

/// The sequence number after `record`'s.
fn next_sequence(record: &KeyRecord) -> Result<u32, KeystoreError> {
    record.sequence.checked_add(1).ok_or(KeystoreError::SequenceExhausted)
}

/// An `UnlockError` for a failure of the surrounding machinery.
fn unlock_error(error: KeystoreError) -> UnlockError {
    match error {
        KeystoreError::Flash(kind) => UnlockError::Flash(kind),
        KeystoreError::Unlock(inner) => inner,
        _ => UnlockError::Flash(NorFlashErrorKind::Other),
    }
}

/// The wrapping key (into `key_encryption_key`) and the stored passphrase check of a record
/// with `binding`, from the passphrase's key and check (and the chip secret when bound).
fn finish_keys(
    binding: Binding,
    chip_secret: &SecretBytes<KEY_LENGTH>,
    passphrase_key: &KeyEncryptionKey,
    passphrase_check: [u8; PASSPHRASE_CHECK_LENGTH],
    key_encryption_key: &mut KeyEncryptionKey,
) -> [u8; PASSPHRASE_CHECK_LENGTH] {
    match binding {
        Binding::NotBound => {
            key_encryption_key.bytes_mut().copy_from_slice(passphrase_key.bytes());
            passphrase_check
        }
        Binding::Chip { .. } => {
            bind_key_encryption_key(chip_secret, passphrase_key, key_encryption_key);
            let check = bind_passphrase_check(chip_secret, &passphrase_check);
            // The HMAC states keyed with the chip secret lie in the frames below this one.
            scrub_stack();
            check
        }
    }
}

/// Wraps `data_key` under `key_encryption_key` with a fresh random nonce and the associated
/// data of the new record, and builds that record (with the passphrase's `passphrase_check`).
#[allow(clippy::too_many_arguments)]
fn seal_record<R: RandomSource>(
    random: &mut R,
    key_encryption_key: &KeyEncryptionKey,
    passphrase_check: [u8; PASSPHRASE_CHECK_LENGTH],
    sequence: u32,
    iterations: u32,
    salt: [u8; SALT_LENGTH],
    admin_public_key: [u8; ADMIN_PUBLIC_KEY_LENGTH],
    binding: Binding,
    data_key: &DataKey,
) -> KeyRecord {
    let mut nonce = [0u8; NONCE_LENGTH];
    random.fill_bytes(&mut nonce);
    let associated = associated_data(iterations, &salt, &admin_public_key, binding);
    let (wrapped_data_key, tag) =
        wrap_data_key(key_encryption_key, &nonce, associated.as_bytes(), data_key);
    KeyRecord {
        binding,
        sequence,
        iterations,
        carried_failures: 0,
        salt,
        nonce,
        admin_public_key,
        wrapped_data_key,
        tag,
        passphrase_check,
    }
}
