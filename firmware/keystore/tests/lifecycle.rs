//! The state machine end to end: enrolment, lock/unlock, reboot, passphrase change, admin key
//! rotation, factory reset.

mod common;
use common::*;
use homemx_keystore::{KeystoreError, KeystoreState, UnlockError};

#[test]
fn fresh_device_enrols_and_unlocks_after_reboot() {
    let flash = fresh_flash();
    let mut store = mount(&flash, 1).unwrap();
    assert_eq!(store.state(), KeystoreState::FactoryFresh);
    assert_eq!(store.admin_public_key(), None);
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Err(UnlockError::NotProvisioned));
    assert_eq!(block_on(store.initialise(b"", ADMIN)).unwrap_err(), KeystoreError::EmptyPassphrase);

    let key = *block_on(store.initialise(PASSPHRASE, ADMIN)).unwrap().expose_secret();
    assert_eq!(store.state(), KeystoreState::Unlocked);
    assert_eq!(store.admin_public_key(), Some(ADMIN));
    assert_ne!(key, [0; 32]);
    assert_eq!(
        block_on(store.initialise(PASSPHRASE, ADMIN)).unwrap_err(),
        KeystoreError::NotFactoryFresh
    );
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Err(UnlockError::WrongState));

    store.lock();
    assert_eq!(store.state(), KeystoreState::Locked);
    assert_eq!(unlock(&mut store, b"wrong", 0), Err(UnlockError::WrongPassphrase));
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Ok(key));

    // Reboot: locked, same key.
    drop(store);
    let mut store = mount(&flash, 2).unwrap();
    assert_eq!(store.state(), KeystoreState::Locked);
    assert_eq!(store.admin_public_key(), Some(ADMIN));
    assert_eq!(store.failed_attempts(), 0);
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Ok(key));
    assert_eq!(sectors_with_records(&flash).len(), 1);
}

#[test]
fn passphrase_can_be_tested_on_empty_and_long_inputs() {
    let (flash, key) = provisioned();
    let mut store = mount(&flash, 2).unwrap();
    assert_eq!(unlock(&mut store, b"", 0), Err(UnlockError::WrongPassphrase));
    let long = vec![b'x'; 10_000];
    assert_eq!(unlock(&mut store, &long, 0), Err(UnlockError::WrongPassphrase));
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Ok(key));
}

#[test]
fn change_passphrase_keeps_the_data_key_and_erases_the_old_record() {
    let (flash, key) = provisioned();
    let mut store = mount(&flash, 2).unwrap();
    assert_eq!(
        block_on(store.change_passphrase(PASSPHRASE, NEW_PASSPHRASE, 0)),
        Err(KeystoreError::Locked)
    );
    unlock(&mut store, PASSPHRASE, 0).unwrap();
    assert_eq!(
        block_on(store.change_passphrase(b"not it", NEW_PASSPHRASE, 0)),
        Err(KeystoreError::Unlock(UnlockError::WrongPassphrase))
    );
    assert_eq!(
        block_on(store.change_passphrase(PASSPHRASE, b"", 0)),
        Err(KeystoreError::EmptyPassphrase)
    );
    block_on(store.change_passphrase(PASSPHRASE, NEW_PASSPHRASE, 0)).unwrap();
    assert_eq!(store.state(), KeystoreState::Unlocked);
    // Still unlocked with the new key-encryption key: rotation works without a new unlock.
    block_on(store.rotate_admin_key(OTHER_ADMIN)).unwrap();
    assert_eq!(sectors_with_records(&flash).len(), 1, "old records erased");

    drop(store);
    let mut store = mount(&flash, 3).unwrap();
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Err(UnlockError::WrongPassphrase));
    assert_eq!(unlock(&mut store, NEW_PASSPHRASE, 0), Ok(key));
    assert_eq!(store.admin_public_key(), Some(OTHER_ADMIN));
}

#[test]
fn rotate_admin_key_needs_unlock_and_survives_reboot() {
    let (flash, key) = provisioned();
    let mut store = mount(&flash, 2).unwrap();
    assert_eq!(block_on(store.rotate_admin_key(OTHER_ADMIN)), Err(KeystoreError::Locked));
    assert_eq!(store.admin_public_key(), Some(ADMIN));
    unlock(&mut store, PASSPHRASE, 0).unwrap();
    block_on(store.rotate_admin_key(OTHER_ADMIN)).unwrap();
    assert_eq!(store.admin_public_key(), Some(OTHER_ADMIN));
    assert_eq!(store.state(), KeystoreState::Unlocked);
    drop(store);
    let mut store = mount(&flash, 3).unwrap();
    assert_eq!(store.admin_public_key(), Some(OTHER_ADMIN));
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Ok(key));
    assert_eq!(sectors_with_records(&flash).len(), 1);
}

#[test]
fn factory_reset_destroys_the_wrapped_key() {
    let (flash, key) = provisioned();
    let before = flash.snapshot();
    let mut store = mount(&flash, 2).unwrap();
    unlock(&mut store, PASSPHRASE, 0).unwrap();
    block_on(store.factory_reset()).unwrap();
    assert_eq!(store.state(), KeystoreState::FactoryFresh);
    assert_eq!(store.admin_public_key(), None);
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Err(UnlockError::NotProvisioned));
    // Nothing of the record is left: the whole region is erased.
    assert!(flash.snapshot()[..REGION.end as usize].iter().all(|&byte| byte == 0xFF));
    assert!(before.iter().any(|&byte| byte != 0xFF));

    // Reboot: still fresh; re-enrolment with the same passphrase gives a different data key,
    // so whatever the old key encrypted stays unreadable.
    drop(store);
    let mut store = mount(&flash, 3).unwrap();
    assert_eq!(store.state(), KeystoreState::FactoryFresh);
    let new_key = *block_on(store.initialise(PASSPHRASE, ADMIN)).unwrap().expose_secret();
    assert_ne!(new_key, key);
    store.lock();
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Ok(new_key));
}

#[test]
fn factory_reset_works_while_locked() {
    let (flash, _key) = provisioned();
    let mut store = mount(&flash, 2).unwrap();
    block_on(store.factory_reset()).unwrap();
    assert_eq!(mount(&flash, 3).unwrap().state(), KeystoreState::FactoryFresh);
}

#[test]
fn data_key_debug_shows_no_secret() {
    let flash = fresh_flash();
    let mut store = mount(&flash, 1).unwrap();
    let key = block_on(store.initialise(PASSPHRASE, ADMIN)).unwrap();
    assert_eq!(format!("{key:?}"), "DataKey(..)");
}

#[test]
fn invalid_regions_and_parameters_are_refused() {
    let flash = fresh_flash();
    let random = || TestRandom::new(1);
    #[allow(clippy::reversed_empty_ranges)]
    let regions = [0..4096, 1..4097, 0..0x5000, 4096..0];
    for region in regions {
        let result = block_on(Store::mount(flash.clone(), region.clone(), random(), config()));
        assert_eq!(result.err(), Some(KeystoreError::InvalidRegion), "{region:?}");
    }
    for iterations in [0, homemx_keystore::MAX_ITERATIONS + 1] {
        let config = homemx_keystore::KeystoreConfig { iterations };
        let result = block_on(Store::mount(flash.clone(), REGION, random(), config));
        assert_eq!(result.err(), Some(KeystoreError::InvalidIterations));
    }
    // A two-sector region works.
    let result = block_on(Store::mount(flash.clone(), 0x2000..0x4000, random(), config()));
    assert!(result.is_ok());
}
