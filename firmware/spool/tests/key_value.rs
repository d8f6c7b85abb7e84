//! The encrypted key-value store: round trips, removal, counters, restart, tampering,
//! power cuts, and sharing one flash with the queue.

mod common;

use common::*;
use homemx_spool::testing::{block_on, CutMode, SimulatedFlashError, TestRandom};
use homemx_spool::{KeyValueStore, SpoolError};

type Store = KeyValueStore<Flash, TestRandom>;
/// The store's region: the 8 KiB below the queue's region on the same flash.
const STORE_REGION: core::ops::Range<u32> = 0x0..0x2000;

fn open(flash: &Flash, seed: u64) -> Store {
    Store::new(flash.clone(), STORE_REGION, &KEY, TestRandom::new(seed)).unwrap()
}

#[test]
fn store_fetch_remove_counters_and_restart() {
    let flash = new_flash();
    let mut store = open(&flash, 1);
    let password = Store::key_for("credential", b"smarthost");
    let uidl = Store::key_for("uidl", b"1234567890abcdef@backup-mx");
    let delivered = Store::key_for("counter", b"delivered");
    block_on(async {
        let mut out = [0u8; 256];
        assert_eq!(store.fetch(password, &mut out).await.unwrap(), None);
        store.store(password, b"correct horse battery staple").await.unwrap();
        store.store(uidl, b"").await.unwrap();
        assert_eq!(store.add_to_counter(delivered, 1).await.unwrap(), 1);
        assert_eq!(store.add_to_counter(delivered, 5).await.unwrap(), 6);
        let length = store.fetch(password, &mut out).await.unwrap().unwrap();
        assert_eq!(&out[..length], b"correct horse battery staple");
        store.store(password, b"new secret").await.unwrap();
        assert_eq!(store.fetch(uidl, &mut out).await.unwrap(), Some(0));
        store.remove(uidl).await.unwrap();
        assert_eq!(store.fetch(uidl, &mut out).await.unwrap(), None);
        assert_eq!(store.store(1, &[0; 257]).await, Err(SpoolError::BufferTooSmall));
    });
    drop(store);
    let mut store = open(&flash, 2);
    block_on(async {
        let mut out = [0u8; 256];
        let length = store.fetch(password, &mut out).await.unwrap().unwrap();
        assert_eq!(&out[..length], b"new secret");
        assert_eq!(store.fetch(uidl, &mut out).await.unwrap(), None);
        assert_eq!(store.fetch_counter(delivered).await.unwrap(), 6);
        // Many updates: sequential-storage collects garbage in its two sectors.
        for value in 0..400u64 {
            store.store(delivered, &value.to_le_bytes()).await.unwrap();
        }
        assert_eq!(store.fetch_counter(delivered).await.unwrap(), 399);
        let length = store.fetch(password, &mut out).await.unwrap().unwrap();
        assert_eq!(&out[..length], b"new secret");
    });
    let image = flash.snapshot();
    assert!(!image.windows(10).any(|w| w == b"new secret"), "values are encrypted");
}

#[test]
fn tampered_values_are_refused() {
    let flash = new_flash();
    let mut store = open(&flash, 1);
    block_on(store.store(42, b"a value to protect")).unwrap();
    drop(store);
    let image = flash.snapshot();
    let programmed: Vec<usize> = (0..0x2000).filter(|&address| image[address] != 0xFF).collect();
    let mut refused = 0;
    for &address in &programmed {
        for bit in [0u8, 3, 7] {
            flash.flip_bit(address, bit);
            let mut store = open(&flash, 2);
            let mut out = [0u8; 256];
            match block_on(store.fetch(42, &mut out)) {
                Ok(Some(length)) => assert_eq!(&out[..length], b"a value to protect", "flip at {address} bit {bit}"),
                Ok(None) | Err(_) => refused += 1,
            }
            flash.flip_bit(address, bit);
        }
    }
    assert!(refused > 0);
}

#[test]
fn a_value_sealed_for_one_key_does_not_open_under_another() {
    let flash = new_flash();
    let mut store = open(&flash, 1);
    block_on(store.store(1, b"for key one")).unwrap();
    // Rewrite the stored key field (first 8 bytes of the item's data) from 1 to 2.
    let image = flash.snapshot();
    let position = (0..0x2000 - 8).find(|&at| image[at..at + 8] == 1u64.to_le_bytes()).unwrap();
    flash.overwrite(position, &2u64.to_le_bytes());
    let mut store = open(&flash, 2);
    let mut out = [0u8; 256];
    let result = block_on(store.fetch(2, &mut out));
    assert!(!matches!(result, Ok(Some(_))), "{result:?}");
}

#[test]
fn power_cuts_leave_the_old_or_the_new_value() {
    let mut cuts = 0;
    for mode in [CutMode::Clean, CutMode::Torn] {
        for cut in 1..=12u64 {
            let flash = new_flash();
            let mut store = open(&flash, 1);
            block_on(async {
                store.store(7, b"old").await.unwrap();
                store.store(8, b"other").await.unwrap();
            });
            flash.cut_power_at(cut, mode, cut);
            let outcome: Result<(), SpoolError<SimulatedFlashError>> = block_on(async {
                for round in 0..30u32 {
                    store.store(7, format!("new {round}").as_bytes()).await?;
                }
                Ok(())
            });
            drop(store);
            flash.restore_power();
            let mut store = open(&flash, 2);
            let mut out = [0u8; 256];
            let value = block_on(store.fetch(7, &mut out)).unwrap().map(|length| out[..length].to_vec());
            let value = value.expect("key 7 must survive");
            assert!(value == b"old" || value.starts_with(b"new "), "cut {cut}: {value:?}");
            let other = block_on(store.fetch(8, &mut out)).unwrap();
            assert_eq!(other.map(|length| out[..length].to_vec()), Some(b"other".to_vec()));
            block_on(store.store(7, b"works")).unwrap();
            if outcome.is_err() {
                cuts += 1;
            }
        }
    }
    assert!(cuts > 0);
}

#[test]
fn store_and_queue_share_one_flash() {
    let flash = new_flash();
    let mut store = open(&flash, 1);
    let (mut spool, _) = mount(&flash, 1);
    block_on(async {
        store.store(1, b"setting").await.unwrap();
        let id = enqueue(&mut spool, &message_bytes(1, 9000), 1, 512).await.unwrap();
        store.store(1, b"setting 2").await.unwrap();
        assert_eq!(read_all(&mut spool, id).await.unwrap(), message_bytes(1, 9000));
    });
    let (_, report) = mount(&flash, 2);
    assert!(report.is_clean());
}

/// The cache the firmware uses: a 2-sector region, 4 keys (fewer than the test uses, so
/// entries are evicted and looked up again on flash).
type CachedStore = KeyValueStore<Flash, TestRandom, homemx_spool::PageAndKeyCache<2, 4>>;

#[test]
fn a_cached_store_answers_as_the_model_through_evictions_garbage_collection_and_restarts() {
    let flash = new_flash();
    assert!(CachedStore::cached(flash.clone(), 0x0..0x3000, &KEY, TestRandom::new(1)).is_err(), "the region must be exactly 2 sectors");
    let mut store = CachedStore::cached(flash.clone(), STORE_REGION, &KEY, TestRandom::new(1)).unwrap();
    let mut model = std::collections::HashMap::<u64, Vec<u8>>::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    block_on(async {
        let mut out = [0u8; 256];
        for step in 0..1_500 {
            let key = next() % 12;
            match next() % 4 {
                0 | 1 => {
                    let value = vec![(step % 251) as u8; (next() % 40) as usize];
                    store.store(key, &value).await.unwrap();
                    model.insert(key, value);
                }
                2 => {
                    store.remove(key).await.unwrap();
                    model.remove(&key);
                }
                _ => {
                    let found = store.fetch(key, &mut out).await.unwrap().map(|length| out[..length].to_vec());
                    assert_eq!(found.as_ref(), model.get(&key), "key {key} at step {step}");
                }
            }
            if step % 500 == 499 {
                // A restart: a new, empty cache over the same flash; then the uncached store
                // reads the same (the cache changes nothing on flash).
                drop(std::mem::replace(&mut store, CachedStore::cached(flash.clone(), STORE_REGION, &KEY, TestRandom::new(step)).unwrap()));
                let mut plain = open(&flash, step);
                for key in 0..12 {
                    let found = plain.fetch(key, &mut out).await.unwrap().map(|length| out[..length].to_vec());
                    assert_eq!(found.as_ref(), model.get(&key), "uncached, key {key} after step {step}");
                }
            }
        }
    });
}
