//! Failed unlocks: growing delays, the persisted count survives reboot, the delay after boot,
//! success resets, and the attempt log moving to the next sector when full.

mod common;
use common::*;
use homemx_keystore::{unlock_delay, UnlockError};

#[test]
fn delays_grow_and_the_count_survives_reboot() {
    let (flash, key) = provisioned();
    let mut store = mount(&flash, 2).unwrap();
    // Three free failures.
    for attempt in 1..=3 {
        assert_eq!(unlock(&mut store, b"guess", 0), Err(UnlockError::WrongPassphrase));
        assert_eq!(store.failed_attempts(), attempt);
        assert_eq!(store.unlock_wait_seconds(0), 0);
    }
    // The fourth is allowed at once; then 2 s, then 4 s.
    assert_eq!(unlock(&mut store, b"guess", 10), Err(UnlockError::WrongPassphrase));
    assert_eq!(unlock(&mut store, PASSPHRASE, 11), Err(UnlockError::TooSoon { wait_seconds: 1 }));
    assert_eq!(store.failed_attempts(), 4, "a refused-as-too-soon attempt is not counted");
    assert_eq!(unlock(&mut store, b"guess", 12), Err(UnlockError::WrongPassphrase));
    assert_eq!(unlock(&mut store, b"guess", 15), Err(UnlockError::TooSoon { wait_seconds: 1 }));
    assert_eq!(unlock(&mut store, b"guess", 16), Err(UnlockError::WrongPassphrase));
    assert_eq!(store.failed_attempts(), 6);
    assert_eq!(store.unlock_wait_seconds(16), unlock_delay(6));
    assert_eq!(unlock_delay(6), 8);

    // Reboot: the count is on flash; time restarts at 0 and the device waits from boot.
    drop(store);
    let mut store = mount(&flash, 3).unwrap();
    assert_eq!(store.failed_attempts(), 6);
    assert_eq!(unlock(&mut store, PASSPHRASE, 0), Err(UnlockError::TooSoon { wait_seconds: 8 }));
    assert_eq!(unlock(&mut store, PASSPHRASE, 7), Err(UnlockError::TooSoon { wait_seconds: 1 }));
    // Rebooting again does not shorten it.
    drop(store);
    let mut store = mount(&flash, 4).unwrap();
    assert_eq!(unlock(&mut store, PASSPHRASE, 3), Err(UnlockError::TooSoon { wait_seconds: 5 }));
    assert_eq!(unlock(&mut store, PASSPHRASE, 8), Ok(key));
    assert_eq!(store.failed_attempts(), 0);
    drop(store);
    assert_eq!(mount(&flash, 5).unwrap().failed_attempts(), 0, "success persisted");
}

#[test]
fn failures_cost_no_erase_until_the_log_is_full() {
    let (flash, key) = provisioned();
    let mut store = mount(&flash, 2).unwrap();
    let capacity = store.attempt_log_capacity();
    assert_eq!(capacity, 480);
    let erases = flash.counters().sectors_erased;
    let mut now = 0;
    for _ in 0..capacity {
        now += store.unlock_wait_seconds(now);
        assert_eq!(unlock(&mut store, b"guess", now), Err(UnlockError::WrongPassphrase));
    }
    assert_eq!(flash.counters().sectors_erased, erases, "no erase per failure");
    // The next attempt moves the record (one erase of the old sector, maybe one of the new),
    // carrying the count.
    now += store.unlock_wait_seconds(now);
    assert_eq!(unlock(&mut store, b"guess", now), Err(UnlockError::WrongPassphrase));
    assert!(flash.counters().sectors_erased > erases);
    assert_eq!(store.failed_attempts(), capacity + 1);
    assert_eq!(sectors_with_records(&flash).len(), 1);
    drop(store);
    let mut store = mount(&flash, 3).unwrap();
    assert_eq!(store.failed_attempts(), capacity + 1);
    assert_eq!(store.unlock_wait_seconds(0), homemx_keystore::MAX_DELAY_SECONDS);
    assert_eq!(unlock(&mut store, PASSPHRASE, 3600), Ok(key));
    drop(store);
    assert_eq!(mount(&flash, 4).unwrap().failed_attempts(), 0);
}

#[test]
fn successes_reuse_the_log_without_erases() {
    let (flash, key) = provisioned();
    let erases = flash.counters().sectors_erased;
    for boot in 0..100 {
        let mut store = mount(&flash, boot).unwrap();
        assert_eq!(unlock(&mut store, PASSPHRASE, 0), Ok(key));
    }
    assert_eq!(flash.counters().sectors_erased, erases);
}
