//! The encrypted key-value store: round trips, removal, counters, restart, tampering,
//! power cuts, and sharing one flash with the queue. Round trips, garbage collection, power
//! cuts, the cache and the sharing run on sector sizes of 4, 8, 16, 64 and 128 KiB: the store
//! runs until sequential-storage has moved the live items between its sectors (compaction)
//! several times, whatever their size.

mod common;

use common::*;
use homemx_spool::testing::{block_on, CutMode, OperationKind, SimulatedFlash, SimulatedFlashError, TestRandom};
use homemx_spool::{KeyValueStore, SpoolError};
use sequential_storage::cache::CacheImpl;

type Store = KeyValueStore<Flash, TestRandom>;
type SizedStore<const SECTOR: usize> = KeyValueStore<SizedFlash<SECTOR>, TestRandom>;
/// The cache the firmware used: a 2-sector region, 4 keys (fewer than the tests use, so
/// entries are evicted and looked up again on flash).
type CachedStore<const SECTOR: usize> = KeyValueStore<SizedFlash<SECTOR>, TestRandom, homemx_spool::PageAndKeyCache<2, 4>>;
/// The store's region on a flash of `sector`-byte sectors: the two sectors below the queue's
/// (the 8 KiB below it with 4 KiB sectors).
const fn sized_store_region(sector: usize) -> core::ops::Range<u32> {
    0..2 * sector as u32
}

fn open(flash: &Flash, seed: u64) -> Store {
    open_sized(flash, seed)
}

fn open_sized<const SECTOR: usize>(flash: &SizedFlash<SECTOR>, seed: u64) -> SizedStore<SECTOR> {
    SizedStore::<SECTOR>::new(flash.clone(), sized_store_region(SECTOR), &KEY, TestRandom::new(seed)).unwrap()
}

/// A value of `length` bytes for `key` at `round`.
fn value(key: u64, round: u32, length: usize) -> Vec<u8> {
    message_bytes(round.wrapping_mul(31).wrapping_add(key as u32), length)
}

/// Stores new values of `key` (of 120 to 256 bytes) until the flash has erased `erases`
/// sectors more (sequential-storage erases a sector after moving its live items out); returns
/// the last value stored. Bounded: at most 100 stores per 4 KiB of region.
async fn churn_until_erased<const SECTOR: usize>(
    store: &mut SizedStore<SECTOR>,
    flash: &SizedFlash<SECTOR>,
    key: u64,
    erases: u64,
) -> Result<Vec<u8>, SpoolError<SimulatedFlashError>> {
    let target = flash.counters().sectors_erased + erases;
    let mut last = Vec::new();
    for round in 0..(50 * SECTOR / 1024) as u32 {
        if flash.counters().sectors_erased >= target {
            return Ok(last);
        }
        last = value(key, round, 120 + (round as usize * 37) % 137);
        store.store(key, &last).await?;
    }
    panic!("no garbage collection after {} stores", 50 * SECTOR / 1024);
}

fn store_fetch_remove_counters_and_restart<const SECTOR: usize>() {
    let flash = new_sized_flash::<SECTOR>();
    let mut store = open_sized(&flash, 1);
    let password = Store::key_for("credential", b"smarthost");
    let uidl = Store::key_for("uidl", b"1234567890abcdef@backup-mx");
    let delivered = Store::key_for("counter", b"delivered");
    let churned = Store::key_for("uidl", b"churned");
    let largest = vec![0x5A; 256];
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
        store.store(2, &largest).await.unwrap();
    });
    drop(store);
    let mut store = open_sized(&flash, 2);
    block_on(async {
        let mut out = [0u8; 256];
        let length = store.fetch(password, &mut out).await.unwrap().unwrap();
        assert_eq!(&out[..length], b"new secret");
        assert_eq!(store.fetch(uidl, &mut out).await.unwrap(), None);
        assert_eq!(store.fetch_counter(delivered).await.unwrap(), 6);
        // Many updates: sequential-storage collects garbage, moving the live items from the
        // sector it erases into the other one, twice (there and back).
        let erased = flash.counters().sectors_erased;
        let last = churn_until_erased(&mut store, &flash, churned, 2).await.unwrap();
        assert!(flash.counters().sectors_erased >= erased + 2);
        for value in 0..50u64 {
            store.store(delivered, &value.to_le_bytes()).await.unwrap();
        }
        assert_eq!(store.fetch_counter(delivered).await.unwrap(), 49);
        let length = store.fetch(churned, &mut out).await.unwrap().unwrap();
        assert_eq!(&out[..length], last.as_slice());
        let length = store.fetch(password, &mut out).await.unwrap().unwrap();
        assert_eq!(&out[..length], b"new secret");
        assert_eq!(store.fetch(2, &mut out).await.unwrap(), Some(256));
        assert_eq!(out, largest.as_slice());
        assert_eq!(store.fetch(uidl, &mut out).await.unwrap(), None, "a removal survives the moves");
    });
    // And after a restart.
    let mut store = open_sized(&flash, 3);
    block_on(async {
        let mut out = [0u8; 256];
        let length = store.fetch(password, &mut out).await.unwrap().unwrap();
        assert_eq!(&out[..length], b"new secret");
        assert_eq!(store.fetch_counter(delivered).await.unwrap(), 49);
        assert_eq!(store.fetch(uidl, &mut out).await.unwrap(), None);
    });
    let image = flash.snapshot();
    assert!(!image.windows(10).any(|w| w == b"new secret"), "values are encrypted");
}

for_each_sector_size!(store_fetch_remove_counters_and_restart);

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

/// Runs of up to this many operations are cut at every one.
const KEY_VALUE_FULL_SWEEP: usize = 240;
/// Longer runs (a garbage collection needs a sector's worth of stores, 1,300 of them at
/// 128 KiB) are cut at every operation from this many before each erase (closing the full
/// sector, moving the live items out of the one to erase) to two after it, and at this many
/// others spread over the run.
const KEY_VALUE_CUTS_BEFORE_ERASES: usize = 12;
const KEY_VALUE_CUT_SAMPLES: usize = 8;

/// What a run of [`power_cuts_leave_the_old_or_the_new_value`] asked for before it stopped.
#[derive(Default)]
struct Progress {
    /// Keys 0 to 6 whose store returned.
    others_stored: usize,
    /// The values key 7 was given, the last one perhaps cut off.
    sevens: Vec<Vec<u8>>,
}

/// The values of keys 0 to 6.
fn others() -> Vec<(u64, Vec<u8>)> {
    (0..7u64).map(|key| (key, value(key, 1000, 30 + key as usize * 30))).collect()
}

/// Stores keys 0 to 6, then new values of key 7 until two sectors were erased.
async fn run_until_two_collections<const SECTOR: usize, C: CacheImpl<u64>>(
    store: &mut KeyValueStore<SizedFlash<SECTOR>, TestRandom, C>,
    flash: &SizedFlash<SECTOR>,
    progress: &mut Progress,
) -> Result<(), SpoolError<SimulatedFlashError>> {
    for (key, value) in &others() {
        store.store(*key, value).await?;
        progress.others_stored += 1;
    }
    let erased = flash.counters().sectors_erased;
    let mut round = 0u32;
    while flash.counters().sectors_erased < erased + 2 {
        let next = value(7, round, 120 + (round as usize * 37) % 137);
        progress.sevens.push(next.clone());
        store.store(7, &next).await?;
        round += 1;
        assert!(round < (50 * SECTOR / 1024) as u32, "no garbage collection");
    }
    Ok(())
}

/// A run on a fresh store: uncached as the firmware runs it up to 16 KiB sectors; with
/// sequential-storage's cache (which changes nothing on flash, see the cached test below)
/// from 64 KiB on. Uncached, every store reads the items written into the sector so far, and
/// moving the live items out of a full sector reads them all once per item (at 128 KiB,
/// 400 items, a third of a second on the host): a run through two collections took seconds.
fn run<const SECTOR: usize>(flash: &SizedFlash<SECTOR>, progress: &mut Progress) -> Result<(), SpoolError<SimulatedFlashError>> {
    if SECTOR <= 16 * 1024 {
        block_on(run_until_two_collections(&mut open_sized(flash, 1), flash, progress))
    } else {
        let mut store = CachedStore::<SECTOR>::cached(flash.clone(), sized_store_region(SECTOR), &KEY, TestRandom::new(1)).unwrap();
        block_on(run_until_two_collections(&mut store, flash, progress))
    }
}

/// After a cut: a store (that may finish an interrupted collection) works, and is fetched
/// back; cached from 64 KiB on, as in [`run`].
fn keeps_working<const SECTOR: usize>(flash: &SizedFlash<SECTOR>, context: &str) {
    let mut out = [0u8; 256];
    let found = if SECTOR <= 16 * 1024 {
        let mut store = open_sized(flash, 3);
        block_on(async {
            store.store(7, b"works").await.unwrap();
            store.fetch(7, &mut out).await.unwrap()
        })
    } else {
        let mut store = CachedStore::<SECTOR>::cached(flash.clone(), sized_store_region(SECTOR), &KEY, TestRandom::new(3)).unwrap();
        block_on(async {
            store.store(7, b"works").await.unwrap();
            store.fetch(7, &mut out).await.unwrap()
        })
    };
    assert_eq!(found, Some(5), "{context}");
}

/// Seven keys, then updates of key 7 through two garbage collections (the other keys are
/// moved twice), cut at every operation (or, for long runs, at every one around each erase,
/// where the live items are moved, and at a sample of the others), clean and torn: after a
/// restart, read by the uncached store as the firmware reads, key 7 holds its last value or
/// the one being stored, every other key stored holds its value, and the store keeps working.
/// A torn (half-finished) erase is left out: see `a_half_finished_erase_keeps_every_key`.
fn power_cuts_leave_the_old_or_the_new_value<const SECTOR: usize>() {
    let others = others();
    let flash = new_sized_flash::<SECTOR>();
    run(&flash, &mut Progress::default()).unwrap();
    let log = flash.operation_log();
    let erases: Vec<usize> = (0..log.len()).filter(|&index| log[index].kind == OperationKind::Erase).collect();
    assert!(erases.len() >= 2, "{} erases", erases.len());
    let around = |index: usize| index.saturating_sub(KEY_VALUE_CUTS_BEFORE_ERASES)..(index + 3).min(log.len());
    let mut cuts: Vec<u64> = if log.len() <= KEY_VALUE_FULL_SWEEP {
        (1..=log.len() as u64).collect()
    } else {
        let samples = (0..log.len()).step_by(log.len().div_ceil(KEY_VALUE_CUT_SAMPLES));
        erases.iter().flat_map(|&index| around(index)).chain(samples).map(|index| index as u64 + 1).collect()
    };
    cuts.sort_unstable();
    cuts.dedup();
    for mode in [CutMode::Clean, CutMode::Torn] {
        for &cut in &cuts {
            let context = format!("{} KiB sectors, cut at operation {cut} of {} ({mode:?})", SECTOR / 1024, log.len());
            let flash = new_sized_flash::<SECTOR>();
            flash.cut_power_at(cut, mode, cut);
            let mut progress = Progress::default();
            assert!(run(&flash, &mut progress).is_err(), "{context}: the cut must stop the run");
            flash.restore_power();
            let mut store = open_sized(&flash, 2);
            let mut out = [0u8; 256];
            block_on(async {
                for (index, (key, value)) in others.iter().enumerate() {
                    let found = store.fetch(*key, &mut out).await.unwrap().map(|length| out[..length].to_vec());
                    match found {
                        Some(found) => assert_eq!(&found, value, "{context}: key {key}"),
                        // Only the one being stored when the power went, or a later one.
                        None => assert!(index >= progress.others_stored, "{context}: key {key} lost"),
                    }
                }
                let seven = store.fetch(7, &mut out).await.unwrap().map(|length| out[..length].to_vec());
                let sevens = &progress.sevens;
                match seven {
                    Some(found) => {
                        let newest = &sevens[sevens.len().saturating_sub(2)..];
                        assert!(newest.contains(&found), "{context}: key 7 holds an older value");
                    }
                    None => assert!(sevens.len() <= 1, "{context}: key 7 lost after {} stores", sevens.len()),
                }
            });
            keeps_working(&flash, &context);
        }
    }
    println!("key-value power cuts, {} KiB sectors: {} cut points of {} operations, twice", SECTOR / 1024, cuts.len(), log.len());
}

for_each_sector_size!(power_cuts_leave_the_old_or_the_new_value);

fn store_and_queue_share_one_flash<const SECTOR: usize>() {
    let flash = new_sized_flash::<SECTOR>();
    let mut store = open_sized(&flash, 1);
    let (mut spool, _) = mount(&flash, 1);
    let data = message_bytes(1, scaled::<SECTOR>(9000));
    block_on(async {
        store.store(1, b"setting").await.unwrap();
        let id = enqueue(&mut spool, &data, 1, 512).await.unwrap();
        store.store(1, b"setting 2").await.unwrap();
        churn_until_erased(&mut store, &flash, 2, 2).await.unwrap();
        assert_eq!(read_all(&mut spool, id).await.unwrap(), data);
    });
    let (_, report) = mount(&flash, 2);
    assert!(report.is_clean());
    let mut out = [0u8; 256];
    assert_eq!(block_on(open_sized(&flash, 3).fetch(1, &mut out)).unwrap(), Some(9));
}

for_each_sector_size!(store_and_queue_share_one_flash);


/// Random stores, removals and fetches of 12 keys against a model, through three garbage
/// collections (values of up to 250 bytes), with a restart (a new, empty cache) after every
/// collection, where the uncached store must read the same.
fn a_cached_store_answers_as_the_model_through_evictions_garbage_collection_and_restarts<const SECTOR: usize>() {
    let flash = new_sized_flash::<SECTOR>();
    let region = sized_store_region(SECTOR);
    let cached = |seed: u64| CachedStore::<SECTOR>::cached(flash.clone(), region.clone(), &KEY, TestRandom::new(seed));
    let three = 0..3 * SECTOR as u32;
    assert!(CachedStore::<SECTOR>::cached(flash.clone(), three, &KEY, TestRandom::new(1)).is_err(), "the region must be exactly 2 sectors");
    let mut store = cached(1).unwrap();
    let mut model = std::collections::HashMap::<u64, Vec<u8>>::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut restarts = 0;
    let mut erased = flash.counters().sectors_erased;
    block_on(async {
        let mut out = [0u8; 256];
        for step in 0..(100 * SECTOR / 1024) as u64 {
            let key = next() % 12;
            match next() % 4 {
                0 | 1 => {
                    let value = vec![(step % 251) as u8; (next() % 251) as usize];
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
            if flash.counters().sectors_erased > erased {
                // A restart: a new, empty cache over the same flash; then the uncached store
                // reads the same (the cache changes nothing on flash).
                erased = flash.counters().sectors_erased;
                restarts += 1;
                drop(std::mem::replace(&mut store, cached(step).unwrap()));
                let mut plain = open_sized(&flash, step);
                for key in 0..12 {
                    let found = plain.fetch(key, &mut out).await.unwrap().map(|length| out[..length].to_vec());
                    assert_eq!(found.as_ref(), model.get(&key), "uncached, key {key} after step {step}");
                }
                if restarts == 3 {
                    return;
                }
            }
        }
        panic!("only {restarts} garbage collections");
    });
}

for_each_sector_size!(a_cached_store_answers_as_the_model_through_evictions_garbage_collection_and_restarts);

/// The geometry and the region are checked when the store is made.
#[test]
fn unsupported_geometries_and_invalid_regions_are_refused() {
    let small = SimulatedFlash::<4, 1024>::new(16 * 1024);
    let refused = KeyValueStore::new(small, 0..0x2000, &KEY, TestRandom::new(1)).err();
    assert_eq!(refused, Some(SpoolError::UnsupportedGeometry), "1 KiB sectors");
    let flash = new_sized_flash::<65536>();
    let make = |region: core::ops::Range<u32>| SizedStore::<65536>::new(flash.clone(), region, &KEY, TestRandom::new(1)).err();
    assert_eq!(make(0..0x10000), Some(SpoolError::InvalidRegion), "one sector");
    assert_eq!(make(0x1000..0x21000), Some(SpoolError::InvalidRegion), "not whole sectors");
    assert_eq!(make(0x1F0000..0x210000), Some(SpoolError::InvalidRegion), "beyond the flash");
    let (start, end) = (0x20000, 0x10000);
    assert_eq!(make(start..end), Some(SpoolError::InvalidRegion), "backwards");
    assert_eq!(make(0x1E0000..0x200000), None, "the last two sectors");
}

/// A power cut during the erase that ends a garbage collection, after every live item was
/// moved out of the sector, leaves that sector half erased (random bits set). Every key must
/// still read back. It does not with sequential-storage 8.0.2: when the first byte of the
/// half-erased sector reads as "in use" and the last as not, the map takes it for the sector
/// being written, and every fetch answers "absent" (found with 8 KiB sectors, seed 125: all
/// eight keys gone, the sector that holds them intact). Ignored until that is fixed or worked
/// around; run it with `cargo test -p homemx-spool --test key_value -- --ignored`.
#[test]
fn a_half_finished_erase_keeps_every_key() {
    fn check<const SECTOR: usize>() -> Vec<String> {
        let flash = new_sized_flash::<SECTOR>();
        run(&flash, &mut Progress::default()).unwrap();
        let log = flash.operation_log();
        let erase = (0..log.len()).find(|&index| log[index].kind == OperationKind::Erase).unwrap() as u64 + 1;
        let mut lost = Vec::new();
        for seed in (1..=16).chain([erase]) {
            let flash = new_sized_flash::<SECTOR>();
            flash.cut_power_at(erase, CutMode::Torn, seed);
            let mut progress = Progress::default();
            assert!(run(&flash, &mut progress).is_err());
            flash.restore_power();
            let mut store = open_sized(&flash, 2);
            let mut out = [0u8; 256];
            let missing: Vec<u64> = (0..8).filter(|&key| !matches!(block_on(store.fetch(key, &mut out)), Ok(Some(_)))).collect();
            if !missing.is_empty() {
                lost.push(format!("{} KiB sectors, seed {seed}: keys {missing:?} lost", SECTOR / 1024));
            }
        }
        lost
    }
    let lost: Vec<String> = [check::<4096>(), check::<8192>(), check::<16384>(), check::<65536>()].concat();
    assert!(lost.is_empty(), "{lost:#?}");
}
