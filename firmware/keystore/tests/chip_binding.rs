//! The key store bound to the chip, attacked: a copy of the key store's flash opened on another
//! chip (with the right passphrase), on a board without a chip key, or with the binding byte
//! flipped (integrity hash recomputed, as an attacker would) never unlocks; an unbound record
//! still works where there is no chip key, and is bound by its first unlock where there is one;
//! every rewrite keeps the binding.

mod common;
use common::*;
use homemx_keystore::chip_binding::{chip_fingerprint, CHIP_KEY_LABEL};
use homemx_keystore::record::{KeyRecord, RECORD_LENGTH};
use homemx_keystore::secret::SecretBytes;
use homemx_keystore::{Binding, ChipKey, ChipKeyError, Keystore, KeystoreError, KeystoreState, UnlockError};
use sha2::{Digest, Sha256};

/// A chip key for the tests: SHA-256 of a per-chip secret and the label (what matters is that
/// each chip gives its own stable bytes), or a chip that refuses.
#[derive(Clone, Copy)]
struct TestChip {
    secret: u8,
    refuses: bool,
}

const CHIP_A: TestChip = TestChip { secret: 0xA0, refuses: false };
const CHIP_B: TestChip = TestChip { secret: 0xB0, refuses: false };
const CHIP_A_BROKEN: TestChip = TestChip { secret: 0xA0, refuses: true };

impl ChipKey for TestChip {
    fn is_available(&self) -> bool {
        true
    }

    fn derive(&mut self, label: &[u8; 32], output: &mut [u8; 32]) -> Result<(), ChipKeyError> {
        if self.refuses {
            return Err(ChipKeyError::Hardware);
        }
        let mut hash = Sha256::new();
        hash.update([self.secret; 32]);
        hash.update(label);
        output.copy_from_slice(&hash.finalize());
        Ok(())
    }
}

type ChipStore = Keystore<Flash, TestRandom, TestChip>;

fn mount_on(flash: &Flash, chip: TestChip, seed: u64) -> ChipStore {
    block_on(ChipStore::mount_with_chip_key(flash.clone(), REGION, TestRandom::new(seed), chip, config())).unwrap()
}

fn unlock_on(store: &mut ChipStore, passphrase: &[u8], now: u64) -> Result<[u8; 32], UnlockError> {
    block_on(store.unlock(passphrase, now)).map(|key| *key.expose_secret())
}

/// A device provisioned on `chip`, locked: its flash and data key.
fn provisioned_on(chip: TestChip) -> (Flash, [u8; 32]) {
    let flash = fresh_flash();
    let mut store = mount_on(&flash, chip, 1);
    let key = *block_on(store.initialise(PASSPHRASE, ADMIN)).unwrap().expose_secret();
    (flash, key)
}

/// The current record and where it starts.
fn current_record(flash: &Flash) -> (KeyRecord, usize) {
    let sectors = sectors_with_records(flash);
    assert_eq!(sectors.len(), 1);
    let start = sectors[0] * SECTOR;
    (KeyRecord::decode(&flash.snapshot()[start..start + RECORD_LENGTH]).unwrap(), start)
}

/// A copy of `flash` with its record changed and the keyless hash recomputed.
fn forge(flash: &Flash, change: impl Fn(&mut KeyRecord)) -> Flash {
    let (mut record, start) = current_record(flash);
    change(&mut record);
    let mut image = flash.snapshot();
    image[start..start + RECORD_LENGTH].copy_from_slice(&record.encode());
    Flash::from_image(REGION.end as usize, &image)
}

/// A plain copy of the flash (the key sector bytes and all), as a thief would take it.
fn copy(flash: &Flash) -> Flash {
    Flash::from_image(REGION.end as usize, &flash.snapshot())
}

fn fingerprint_of(mut chip: TestChip) -> [u8; 2] {
    let mut secret = SecretBytes::<32>::zeroed();
    chip.derive(&CHIP_KEY_LABEL, secret.expose_mut()).unwrap();
    chip_fingerprint(&secret)
}

#[test]
fn a_bound_record_opens_on_its_own_chip() {
    let (flash, key) = provisioned_on(CHIP_A);
    let (record, start) = current_record(&flash);
    assert_eq!(record.binding, Binding::Chip { fingerprint: fingerprint_of(CHIP_A) });
    assert_eq!(flash.snapshot()[start + 5], 1, "the binding byte says bound");
    let mut store = mount_on(&flash, CHIP_A, 2);
    assert_eq!(store.binding(), Some(Binding::Chip { fingerprint: fingerprint_of(CHIP_A) }));
    assert_eq!(unlock_on(&mut store, b"wrong", 0), Err(UnlockError::WrongPassphrase));
    assert_eq!(unlock_on(&mut store, PASSPHRASE, 0), Ok(key));
}

#[test]
fn a_copy_of_the_flash_on_another_chip_never_unlocks() {
    let (flash, _key) = provisioned_on(CHIP_A);
    let stolen = copy(&flash);
    let mut store = mount_on(&stolen, CHIP_B, 2);
    assert_eq!(store.state(), KeystoreState::Locked);
    for _ in 0..3 {
        assert_eq!(unlock_on(&mut store, PASSPHRASE, 0), Err(UnlockError::OtherChip));
    }
    assert_eq!(unlock_on(&mut store, b"wrong", 0), Err(UnlockError::OtherChip));
    assert_eq!(store.failed_attempts(), 0, "no passphrase was tried");
    // The thief fixes the fingerprint to chip B's: the passphrase check and the wrapping key
    // still depend on chip A's key.
    let forged = forge(&flash, |record| record.binding = Binding::Chip { fingerprint: fingerprint_of(CHIP_B) });
    let mut store = mount_on(&forged, CHIP_B, 3);
    assert_eq!(unlock_on(&mut store, PASSPHRASE, 0), Err(UnlockError::WrongPassphrase));
    // The same copy is fine back on chip A.
    let mut store = mount_on(&stolen, CHIP_A, 4);
    assert!(unlock_on(&mut store, PASSPHRASE, 0).is_ok());
}

#[test]
fn a_bound_record_needs_a_chip_key() {
    let (flash, _key) = provisioned_on(CHIP_A);
    let mut store = mount(&copy(&flash), 2).unwrap();
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Err(UnlockError::ChipKey(ChipKeyError::NotAvailable)));
    let mut store = mount_on(&copy(&flash), CHIP_A_BROKEN, 3);
    assert_eq!(unlock_on(&mut store, PASSPHRASE, 0), Err(UnlockError::ChipKey(ChipKeyError::Hardware)));
    assert_eq!(store.failed_attempts(), 0);
}

#[test]
fn a_chip_that_refuses_gets_no_record_at_all() {
    let flash = fresh_flash();
    let mut store = mount_on(&flash, CHIP_A_BROKEN, 1);
    assert_eq!(block_on(store.initialise(PASSPHRASE, ADMIN)).unwrap_err(), KeystoreError::ChipKey(ChipKeyError::Hardware));
    assert_eq!(store.state(), KeystoreState::FactoryFresh);
    assert!(sectors_with_records(&flash).is_empty(), "never falls back to an unbound record");
}

#[test]
fn the_binding_byte_flipped_never_unlocks() {
    // Bound → "not bound" (fingerprint zeroed so that the record parses): on the same chip, on
    // another, and on a board without a chip key.
    let (flash, _key) = provisioned_on(CHIP_A);
    let unbound = forge(&flash, |record| record.binding = Binding::NotBound);
    for chip in [CHIP_A, CHIP_B] {
        let image = copy(&unbound);
        let mut store = mount_on(&image, chip, 2);
        assert_eq!(store.binding(), Some(Binding::NotBound));
        assert_eq!(unlock_on(&mut store, PASSPHRASE, 0), Err(UnlockError::WrongPassphrase));
        drop(store);
        assert_eq!(current_record(&image).0.binding, Binding::NotBound, "a refused record is not re-sealed");
    }
    let mut store = mount(&copy(&unbound), 3).unwrap();
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Err(UnlockError::WrongPassphrase));

    // "Not bound" → bound with the chip's own fingerprint: the wrapping key and the check now
    // ask for a chip key the record was never sealed with.
    let (flash, _key) = provisioned();
    let bound = forge(&flash, |record| record.binding = Binding::Chip { fingerprint: fingerprint_of(CHIP_A) });
    let mut store = mount_on(&bound, CHIP_A, 4);
    assert_eq!(unlock_on(&mut store, PASSPHRASE, 0), Err(UnlockError::WrongPassphrase));
    let mut store = mount(&bound, 5).unwrap();
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Err(UnlockError::ChipKey(ChipKeyError::NotAvailable)));
}

#[test]
fn the_binding_byte_flipped_in_place_makes_the_record_invalid() {
    // Without recomputing the hash, byte 5 flipped is just a corrupt record.
    let (flash, _key) = provisioned_on(CHIP_A);
    let (_, start) = current_record(&flash);
    for bit in 0..8 {
        let image = copy(&flash);
        image.flip_bit(start + 5, bit);
        assert_eq!(mount_on(&image, CHIP_A, 2).state(), KeystoreState::FactoryFresh, "bit {bit}");
    }
}

#[test]
fn an_unbound_record_works_without_a_chip_key() {
    let (flash, key) = provisioned();
    let (record, start) = current_record(&flash);
    assert_eq!(record.binding, Binding::NotBound);
    assert_eq!(&flash.snapshot()[start + 5..start + 8], &[0, 0, 0], "the bytes the first firmware reserved");
    let mut store = mount(&flash, 2).unwrap();
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Ok(key));
    block_on(store.change_passphrase(PASSPHRASE, NEW_PASSPHRASE, 0)).unwrap();
    assert_eq!(store.binding(), Some(Binding::NotBound));
}

#[test]
fn an_unbound_record_is_bound_by_its_first_unlock_on_a_chip() {
    let (flash, key) = provisioned();
    let mut store = mount_on(&flash, CHIP_A, 2);
    assert_eq!(store.binding(), Some(Binding::NotBound));
    assert_eq!(unlock_on(&mut store, PASSPHRASE, 0), Ok(key));
    assert_eq!(store.binding(), Some(Binding::Chip { fingerprint: fingerprint_of(CHIP_A) }));
    // The kept key is the bound one: rotating the admin key re-wraps under it.
    block_on(store.rotate_admin_key(OTHER_ADMIN)).unwrap();
    drop(store);
    assert_eq!(current_record(&flash).0.binding, Binding::Chip { fingerprint: fingerprint_of(CHIP_A) });
    let mut store = mount_on(&flash, CHIP_A, 3);
    assert_eq!(unlock_on(&mut store, PASSPHRASE, 0), Ok(key));
    assert_eq!(store.admin_public_key(), Some(OTHER_ADMIN));
    // From now on the copy is as useless elsewhere as one that was bound from the start.
    assert_eq!(unlock_on(&mut mount_on(&copy(&flash), CHIP_B, 4), PASSPHRASE, 0), Err(UnlockError::OtherChip));
    assert_eq!(
        unlock(&mut mount(&copy(&flash), 5).unwrap(), PASSPHRASE, 0),
        Err(UnlockError::ChipKey(ChipKeyError::NotAvailable))
    );
}

#[test]
fn an_unbound_record_stays_unbound_while_the_chip_refuses() {
    let (flash, key) = provisioned();
    let mut store = mount_on(&flash, CHIP_A_BROKEN, 2);
    assert_eq!(unlock_on(&mut store, PASSPHRASE, 0), Ok(key));
    assert_eq!(store.binding(), Some(Binding::NotBound));
    assert_eq!(current_record(&flash).0.binding, Binding::NotBound);
}

#[test]
fn every_rewrite_keeps_the_binding() {
    let (flash, key) = provisioned_on(CHIP_A);
    let bound = Binding::Chip { fingerprint: fingerprint_of(CHIP_A) };
    let mut store = mount_on(&flash, CHIP_A, 2);
    unlock_on(&mut store, PASSPHRASE, 0).unwrap();
    block_on(store.change_passphrase(PASSPHRASE, NEW_PASSPHRASE, 0)).unwrap();
    assert_eq!(current_record(&flash).0.binding, bound);
    block_on(store.rotate_admin_key(OTHER_ADMIN)).unwrap();
    assert_eq!(current_record(&flash).0.binding, bound);
    store.lock();
    // Fill the attempt log: the record moves to the next slot, still bound.
    let first_slot = sectors_with_records(&flash)[0];
    for _ in 0..store.attempt_log_capacity() + 1 {
        assert_eq!(unlock_on(&mut store, NEW_PASSPHRASE, 0), Ok(key));
        store.lock();
    }
    assert_ne!(sectors_with_records(&flash)[0], first_slot, "the record moved");
    assert_eq!(current_record(&flash).0.binding, bound);
    drop(store);
    assert_eq!(unlock_on(&mut mount_on(&copy(&flash), CHIP_B, 3), NEW_PASSPHRASE, 0), Err(UnlockError::OtherChip));
    let mut store = mount_on(&flash, CHIP_A, 4);
    assert_eq!(unlock_on(&mut store, NEW_PASSPHRASE, 0), Ok(key));
    assert_eq!(store.admin_public_key(), Some(OTHER_ADMIN));
}

#[test]
fn factory_reset_makes_the_old_copy_unreadable_for_good() {
    let (flash, old_key) = provisioned_on(CHIP_A);
    let mut store = mount_on(&flash, CHIP_A, 2);
    block_on(store.factory_reset()).unwrap();
    assert_eq!(store.state(), KeystoreState::FactoryFresh);
    let new_key = *block_on(store.initialise(PASSPHRASE, ADMIN)).unwrap().expose_secret();
    store.lock();
    // Same chip, same passphrase: a new data key; the old one exists nowhere.
    let mut store = mount_on(&flash, CHIP_A, 3);
    assert_eq!(unlock_on(&mut store, PASSPHRASE, 0), Ok(new_key));
    assert_ne!(new_key, old_key);
}

#[test]
fn a_power_cut_while_binding_leaves_the_old_or_the_bound_record() {
    // The unbound device, and how many programs and erases the unlock that binds it takes.
    let (flash, key) = provisioned();
    let image = flash.snapshot();
    let uncut = Flash::from_image(REGION.end as usize, &image);
    let mut store = mount_on(&uncut, CHIP_A, 2);
    let before = uncut.mutating_operations();
    assert_eq!(unlock_on(&mut store, PASSPHRASE, 0), Ok(key));
    let total = uncut.mutating_operations() - before;
    assert!(total >= 3, "attempt word, success word, the rewrite: {total}");
    let (mut old, mut bound) = (0, 0);
    for mode in [CutMode::Clean, CutMode::Torn] {
        for cut in 1..=total {
            let flash = Flash::from_image(REGION.end as usize, &image);
            let mut store = mount_on(&flash, CHIP_A, 3);
            flash.cut_power_at(cut, mode, cut * 7919 + 1);
            let _ = unlock_on(&mut store, PASSPHRASE, 0);
            assert_ne!(store.state(), KeystoreState::Unlocked, "cut {cut} {mode:?}: a failed unlock leaves it locked");
            drop(store);
            flash.restore_power();
            // After the reboot the same passphrase on the same chip gives the same key, and the
            // record is bound (now or by this unlock).
            let mut store = mount_on(&flash, CHIP_A, 4);
            match store.binding() {
                Some(Binding::NotBound) => old += 1,
                Some(Binding::Chip { .. }) => bound += 1,
                None => panic!("cut {cut} {mode:?}: no record left"),
            }
            let wait = store.unlock_wait_seconds(0);
            assert_eq!(unlock_on(&mut store, PASSPHRASE, wait), Ok(key), "cut {cut} {mode:?}");
            assert_eq!(store.binding(), Some(Binding::Chip { fingerprint: fingerprint_of(CHIP_A) }), "cut {cut} {mode:?}");
        }
    }
    assert!(old > 0 && bound > 0, "cuts before and after the new record: {old} old, {bound} bound");
}
