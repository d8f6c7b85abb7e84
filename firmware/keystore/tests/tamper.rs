//! An attacker with the flash: every bit of the record flipped fails closed; a forged record
//! (integrity hash recomputed) with a swapped admin key, changed KDF parameters or a changed
//! wrapped key never unlocks; arbitrary garbage in the attempt log only changes the count.

mod common;
use common::*;
use homemx_keystore::record::{KeyRecord, RECORD_LENGTH};
use homemx_keystore::{KeystoreState, UnlockError};

/// The provisioned image and the sector that holds its record.
fn image_and_record() -> (Vec<u8>, usize, [u8; 32]) {
    let (flash, key) = provisioned();
    let sectors = sectors_with_records(&flash);
    assert_eq!(sectors.len(), 1);
    (flash.snapshot(), sectors[0] * SECTOR, key)
}

#[test]
fn every_bit_of_the_record_flipped_fails_closed() {
    let (image, start, _key) = image_and_record();
    for bit in 0..RECORD_LENGTH * 8 {
        let flash = Flash::from_image(REGION.end as usize, &image);
        flash.flip_bit(start + bit / 8, (bit % 8) as u8);
        let mut store = mount(&flash, 2).unwrap();
        // The integrity hash makes the record invalid: the device looks factory-fresh and
        // nothing unlocks.
        assert_eq!(store.state(), KeystoreState::FactoryFresh, "bit {bit}");
        assert_eq!(unlock(&mut store, PASSPHRASE, 0), Err(UnlockError::NotProvisioned));
    }
}

/// Rewrites the record as an attacker who recomputes the keyless hash would.
fn forge(image: &[u8], start: usize, change: impl Fn(&mut KeyRecord)) -> Flash {
    let mut record = KeyRecord::decode(&image[start..start + RECORD_LENGTH]).unwrap();
    change(&mut record);
    let mut forged = image.to_vec();
    forged[start..start + RECORD_LENGTH].copy_from_slice(&record.encode());
    Flash::from_image(REGION.end as usize, &forged)
}

#[test]
fn swapped_admin_key_is_detected_at_unlock() {
    let (image, start, _key) = image_and_record();
    let flash = forge(&image, start, |record| record.admin_public_key = OTHER_ADMIN);
    let mut store = mount(&flash, 2).unwrap();
    // While locked the store reports what the flash says ...
    assert_eq!(store.admin_public_key(), Some(OTHER_ADMIN));
    // ... and the owner's right passphrase proves it forged: nothing is released.
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Err(UnlockError::RecordTampered));
    assert_eq!(store.state(), KeystoreState::Locked);
    assert_eq!(block_on(store.rotate_admin_key(ADMIN)), Err(homemx_keystore::KeystoreError::Locked));
}

/// A change an attacker makes to a record.
type Forgery = Box<dyn Fn(&mut KeyRecord)>;

#[test]
fn forged_fields_never_unlock() {
    let (image, start, key) = image_and_record();
    let cases: Vec<(&str, Forgery, UnlockError)> = vec![
        ("iterations", Box::new(|r: &mut KeyRecord| r.iterations += 1), UnlockError::WrongPassphrase),
        ("salt", Box::new(|r: &mut KeyRecord| r.salt[3] ^= 0x10), UnlockError::WrongPassphrase),
        ("check", Box::new(|r: &mut KeyRecord| r.passphrase_check[0] ^= 1), UnlockError::WrongPassphrase),
        ("nonce", Box::new(|r: &mut KeyRecord| r.nonce[0] ^= 1), UnlockError::RecordTampered),
        ("wrapped key", Box::new(|r: &mut KeyRecord| r.wrapped_data_key[31] ^= 0x80), UnlockError::RecordTampered),
        ("tag", Box::new(|r: &mut KeyRecord| r.tag[15] ^= 1), UnlockError::RecordTampered),
        ("admin key", Box::new(|r: &mut KeyRecord| r.admin_public_key[0] ^= 1), UnlockError::RecordTampered),
    ];
    for (name, change, expected) in cases {
        let flash = forge(&image, start, change);
        let mut store = mount(&flash, 2).unwrap();
        assert_eq!(unlock(&mut store, PASSPHRASE, 0), Err(expected), "{name}");
        assert_eq!(store.failed_attempts(), 1, "{name}: a refused attempt counts");
    }
    // Outside the associated data on purpose: sequence and carried failures (see record doc).
    let flash = forge(&image, start, |r| r.sequence += 5);
    assert_eq!(unlock(&mut mount(&flash, 2).unwrap(), PASSPHRASE, 0), Ok(key));
}

#[test]
fn forged_huge_iteration_count_is_refused_without_running_it() {
    let (image, start, _key) = image_and_record();
    let mut record = KeyRecord::decode(&image[start..start + RECORD_LENGTH]).unwrap();
    record.iterations = u32::MAX;
    let mut bytes = record.encode();
    // encode() writes any count; decode() refuses it even with a valid hash.
    assert!(KeyRecord::decode(&bytes).is_none());
    bytes[0] = b'H';
    let mut forged = image.clone();
    forged[start..start + RECORD_LENGTH].copy_from_slice(&bytes);
    let flash = Flash::from_image(REGION.end as usize, &forged);
    assert_eq!(mount(&flash, 2).unwrap().state(), KeystoreState::FactoryFresh);
}

#[test]
fn garbage_in_the_attempt_log_only_changes_the_count() {
    let (image, start, key) = image_and_record();
    for seed in 0..64u64 {
        let mut damaged = image.clone();
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for byte in damaged[start + 256..start + SECTOR].iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state % 5 == 0 {
                *byte = state as u8;
            }
        }
        let flash = Flash::from_image(REGION.end as usize, &damaged);
        let mut store = mount(&flash, 2).unwrap();
        let wait = store.unlock_wait_seconds(0);
        assert_eq!(unlock(&mut store, PASSPHRASE, wait), Ok(key), "seed {seed}");
        drop(store);
        assert_eq!(mount(&flash, 3).unwrap().failed_attempts(), 0);
    }
}

#[test]
fn stale_older_record_is_erased_at_mount() {
    // Simulate the state left by a cut between programming a new record and erasing the old.
    let (flash, key) = provisioned();
    let old_image = flash.snapshot();
    let old_sector = sectors_with_records(&flash)[0];
    let mut store = mount(&flash, 2).unwrap();
    unlock(&mut store, PASSPHRASE, 0).unwrap();
    block_on(store.change_passphrase(PASSPHRASE, NEW_PASSPHRASE, 0)).unwrap();
    drop(store);
    let mut both = flash.snapshot();
    both[old_sector * SECTOR..(old_sector + 1) * SECTOR]
        .copy_from_slice(&old_image[old_sector * SECTOR..(old_sector + 1) * SECTOR]);
    let flash = Flash::from_image(REGION.end as usize, &both);
    assert_eq!(sectors_with_records(&flash).len(), 2);
    let mut store = mount(&flash, 3).unwrap();
    assert_eq!(sectors_with_records(&flash).len(), 1, "older record erased");
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Err(UnlockError::WrongPassphrase));
    assert_eq!(unlock(&mut store, NEW_PASSPHRASE, 0), Ok(key));
}
