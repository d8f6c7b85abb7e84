//! The encrypted key-value store: round trips, removal, counters, restart, tampering,
//! power cuts, and sharing one flash with the queue. Round trips, garbage collection, power
//! cuts, the cache and the sharing run on sector sizes of 4, 8, 16, 64 and 128 KiB: the store
//! runs until sequential-storage has moved the live items between its sectors (compaction)
//! several times, whatever their size. Power cuts: at every program and erase (clean and
//! torn) in rings of two and four sectors, half-finished erases with many seeds (and plain
//! sequential-storage failing on the same images), cuts of the store's own repair, a second
//! cut while the store recovers from the first, and images with and without erase intents.

mod common;

use common::*;
use embedded_storage_async::nor_flash::NorFlash;
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
/// sector, moving the live items out of the one to erase, the erase intent) to two after it,
/// and at this many others spread over the run.
const KEY_VALUE_CUTS_BEFORE_ERASES: usize = 12;
const KEY_VALUE_CUT_SAMPLES: usize = 8;

/// The store's region in the power-cut tests: `pages` sectors from the start of the flash
/// (two, as the boards with large sectors have; four for a ring that fills before its first
/// garbage collection, as the QEMU board's 64 do).
const fn region_of(sector: usize, pages: usize) -> core::ops::Range<u32> {
    0..(pages * sector) as u32
}

fn open_in<const SECTOR: usize>(flash: &SizedFlash<SECTOR>, pages: usize, seed: u64) -> SizedStore<SECTOR> {
    SizedStore::<SECTOR>::new(flash.clone(), region_of(SECTOR, pages), &KEY, TestRandom::new(seed)).unwrap()
}

/// What a run of [`run_until_two_collections`] asked for before it stopped.
#[derive(Default, Clone)]
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

/// A run on a fresh store over `pages` sectors: uncached as the firmware runs it up to 16 KiB
/// sectors; with sequential-storage's cache (which changes nothing on flash, see the cached
/// test below) from 64 KiB on, over two sectors. Uncached, every store reads the items
/// written into the sector so far, and moving the live items out of a full sector reads them
/// all once per item (at 128 KiB, 400 items, a third of a second on the host): a run through
/// two collections took seconds.
fn run<const SECTOR: usize>(flash: &SizedFlash<SECTOR>, pages: usize, progress: &mut Progress) -> Result<(), SpoolError<SimulatedFlashError>> {
    if SECTOR <= 16 * 1024 {
        block_on(run_until_two_collections(&mut open_in(flash, pages, 1), flash, progress))
    } else {
        assert_eq!(pages, 2, "the cached store of the tests has two sectors");
        let mut store = CachedStore::<SECTOR>::cached(flash.clone(), sized_store_region(SECTOR), &KEY, TestRandom::new(1)).unwrap();
        block_on(run_until_two_collections(&mut store, flash, progress))
    }
}

/// What key 7 may hold after the cuts of a test.
#[derive(Clone, Copy)]
enum Seven<'a> {
    /// One of the last `n` values it was given (the last `n - 1` stores may have been cut
    /// off), or none if it was given fewer than `n` values.
    Newest(usize),
    /// This value.
    Exactly(&'a [u8]),
}

/// Reads back what [`run_until_two_collections`] stored before it stopped, with `store`:
/// every other key whose store returned holds its value, and key 7 holds what `seven` says.
async fn assert_kept<C: CacheImpl<u64>, const SECTOR: usize>(
    store: &mut KeyValueStore<SizedFlash<SECTOR>, TestRandom, C>,
    progress: &Progress,
    seven: Seven<'_>,
    context: &str,
) {
    let mut out = [0u8; 256];
    for (index, (key, value)) in others().iter().enumerate() {
        let found = store.fetch(*key, &mut out).await.unwrap_or_else(|error| panic!("{context}: key {key}: {error:?}"));
        match found.map(|length| out[..length].to_vec()) {
            Some(found) => assert_eq!(&found, value, "{context}: key {key}"),
            // Only the one being stored when the power went, or a later one.
            None => assert!(index >= progress.others_stored, "{context}: key {key} lost"),
        }
    }
    let found = store.fetch(7, &mut out).await.unwrap_or_else(|error| panic!("{context}: key 7: {error:?}"));
    let found = found.map(|length| out[..length].to_vec());
    let sevens = &progress.sevens;
    match (seven, found) {
        (Seven::Exactly(seven), found) => assert_eq!(found.as_deref(), Some(seven), "{context}: key 7"),
        (Seven::Newest(newest), Some(found)) => {
            assert!(sevens[sevens.len().saturating_sub(newest)..].contains(&found), "{context}: key 7 holds an older value")
        }
        (Seven::Newest(newest), None) => assert!(sevens.len() < newest, "{context}: key 7 lost after {} stores", sevens.len()),
    }
}

/// After a cut: read by the uncached store as the firmware reads (its first fetch repairs),
/// everything [`assert_kept`] expects is there (key 7 one of its `newest` values); a store
/// works (cached from 64 KiB on, as in [`run`]); and after a restart everything is still
/// there, key 7 holding the new value (a half-erased sector taken for a half-finished
/// migration would have cost the other keys at that store).
fn assert_survived<const SECTOR: usize>(flash: &SizedFlash<SECTOR>, pages: usize, progress: &Progress, newest: usize, context: &str) {
    block_on(assert_kept(&mut open_in(flash, pages, 2), progress, Seven::Newest(newest), context));
    let mut out = [0u8; 256];
    let found = if SECTOR <= 16 * 1024 {
        let mut store = open_in(flash, pages, 3);
        block_on(async {
            store.store(7, b"works").await.unwrap_or_else(|error| panic!("{context}: store after the cut: {error:?}"));
            store.fetch(7, &mut out).await.unwrap()
        })
    } else {
        let mut store = CachedStore::<SECTOR>::cached(flash.clone(), region_of(SECTOR, pages), &KEY, TestRandom::new(3)).unwrap();
        block_on(async {
            store.store(7, b"works").await.unwrap_or_else(|error| panic!("{context}: store after the cut: {error:?}"));
            store.fetch(7, &mut out).await.unwrap()
        })
    };
    assert_eq!(found, Some(5), "{context}");
    block_on(assert_kept(&mut open_in(flash, pages, 4), progress, Seven::Exactly(b"works"), context));
}

/// Seven keys, then updates of key 7 through two garbage collections (the other keys are
/// moved twice) in a region of `pages` sectors, cut at every operation (or, for runs longer
/// than `full_sweep`, at every one around each erase, where the live items are moved and the
/// erase intent written, and at a sample of the others), clean and torn (a torn erase leaves
/// random bits: see also `a_half_finished_erase_keeps_every_key` for many of them): after a
/// restart, see [`assert_survived`].
fn sweep_power_cuts<const SECTOR: usize>(pages: usize, full_sweep: usize) {
    let flash = new_sized_flash::<SECTOR>();
    run(&flash, pages, &mut Progress::default()).unwrap();
    let log = flash.operation_log();
    let erases: Vec<usize> = (0..log.len()).filter(|&index| log[index].kind == OperationKind::Erase).collect();
    assert!(erases.len() >= 2, "{} erases", erases.len());
    let around = |index: usize| index.saturating_sub(KEY_VALUE_CUTS_BEFORE_ERASES)..(index + 3).min(log.len());
    let mut cuts: Vec<u64> = if log.len() <= full_sweep {
        (1..=log.len() as u64).collect()
    } else {
        let samples = (0..log.len()).step_by(log.len().div_ceil(KEY_VALUE_CUT_SAMPLES));
        erases.iter().flat_map(|&index| around(index)).chain(samples).map(|index| index as u64 + 1).collect()
    };
    cuts.sort_unstable();
    cuts.dedup();
    for mode in [CutMode::Clean, CutMode::Torn] {
        for &cut in &cuts {
            let context = format!("{} KiB sectors, {pages} of them, cut at operation {cut} of {} ({mode:?})", SECTOR / 1024, log.len());
            let flash = new_sized_flash::<SECTOR>();
            flash.cut_power_at(cut, mode, cut);
            let mut progress = Progress::default();
            assert!(run(&flash, pages, &mut progress).is_err(), "{context}: the cut must stop the run");
            flash.restore_power();
            assert_survived(&flash, pages, &progress, 2, &context);
        }
    }
    let cut_erases = cuts.iter().filter(|&&cut| log[cut as usize - 1].kind == OperationKind::Erase).count();
    println!(
        "key-value power cuts, {} KiB sectors, {pages} of them: {} cut points of {} operations ({cut_erases} erases), clean and torn",
        SECTOR / 1024,
        cuts.len(),
        log.len()
    );
}

fn power_cuts_leave_the_old_or_the_new_value<const SECTOR: usize>() {
    sweep_power_cuts::<SECTOR>(2, KEY_VALUE_FULL_SWEEP);
}

for_each_sector_size!(power_cuts_leave_the_old_or_the_new_value);

/// The same in a ring of four sectors, at every one of its operations: the store fills three
/// sectors before the first garbage collection, opening each without migrating anything (the
/// store writes the erase intent after the item then), as the QEMU board's 64 sectors do.
#[test]
fn power_cuts_leave_the_old_or_the_new_value_in_a_ring_of_four_sectors() {
    sweep_power_cuts::<4096>(4, usize::MAX);
}

/// A second power cut while the store recovers from the first: the run of
/// [`sweep_power_cuts`] on `pages` sectors of 4 KiB is cut at every operation from
/// [`KEY_VALUE_CUTS_BEFORE_ERASES`] before each erase to two after it (clean and torn); then
/// the first store after the restart (which repairs a cut erase, or redoes a cut migration and
/// its erase, writing intents) is cut at each of its operations, clean and torn; after a
/// third start everything is there ([`assert_survived`], key 7 also possibly the value of the
/// store cut the second time).
fn power_cuts_while_recovering(pages: usize) {
    const SECTOR: usize = 4096;
    let flash = new_sized_flash::<SECTOR>();
    run(&flash, pages, &mut Progress::default()).unwrap();
    let log = flash.operation_log();
    let erases: Vec<usize> = (0..log.len()).filter(|&index| log[index].kind == OperationKind::Erase).collect();
    let mut cuts: Vec<u64> =
        erases.iter().flat_map(|&index| index.saturating_sub(KEY_VALUE_CUTS_BEFORE_ERASES)..(index + 3).min(log.len())).map(|index| index as u64 + 1).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let (mut cases, mut longest) = (0, 0);
    for first_mode in [CutMode::Clean, CutMode::Torn] {
        for &first in &cuts {
            let flash = new_sized_flash::<SECTOR>();
            flash.cut_power_at(first, first_mode, first);
            let mut progress = Progress::default();
            assert!(run(&flash, pages, &mut progress).is_err());
            flash.restore_power();
            let image = flash.snapshot();
            // The recovering store's operations, counted on a copy.
            let copy = SizedFlash::<SECTOR>::from_image(image.len(), &image);
            let before = copy.mutating_operations();
            block_on(open_in(&copy, pages, 3).store(7, b"recovering")).unwrap();
            let operations = copy.mutating_operations() - before;
            longest = longest.max(operations);
            progress.sevens.push(b"recovering".to_vec());
            for second_mode in [CutMode::Clean, CutMode::Torn] {
                for second in 1..=operations {
                    let context = format!("{pages} sectors: cut at {first} ({first_mode:?}), then at {second} of {operations} while recovering ({second_mode:?})");
                    let flash = SizedFlash::<SECTOR>::from_image(image.len(), &image);
                    flash.cut_power_at(second, second_mode, first * 1009 + second);
                    assert!(block_on(open_in(&flash, pages, 3).store(7, b"recovering")).is_err(), "{context}: the cut must stop the store");
                    flash.restore_power();
                    assert_survived(&flash, pages, &progress, 3, &context);
                    cases += 1;
                }
            }
        }
    }
    println!("cuts while recovering, {pages} sectors of 4 KiB: {} first cuts, up to {longest} operations of recovery each: {cases} cases, clean and torn", cuts.len() * 2);
}

#[test]
fn power_cuts_while_recovering_from_a_power_cut() {
    power_cuts_while_recovering(2);
}

#[test]
fn power_cuts_while_recovering_from_a_power_cut_in_a_ring_of_four_sectors() {
    power_cuts_while_recovering(4);
}


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

/// Seeds of the torn erase in [`half_finished_erases`]: the bits a cut erase leaves differ
/// with each.
const TORN_ERASE_SEEDS: u64 = 64;

/// How a half-erased sector reads to sequential-storage (first and last byte with at least
/// half their bits programmed: "start" and "end" marked), counted over the seeds.
#[derive(Default, Debug)]
struct MarkerStates {
    /// Start and end marked: "closed" (the next store took it for a half-finished migration).
    closed: usize,
    /// Start only: "partial-open" (the map could start from it: every key absent).
    partial_open: usize,
    /// Neither: "open", with garbage inside (later written over).
    open: usize,
    /// End only: "corrupted", the one state sequential-storage repairs (by erasing it again).
    corrupted: usize,
}

impl MarkerStates {
    fn count(&mut self, image: &[u8], sector: core::ops::Range<usize>) {
        let marked = |byte: u8| byte.count_zeros() >= 4;
        match (marked(image[sector.start]), marked(image[sector.end - 1])) {
            (true, true) => self.closed += 1,
            (true, false) => self.partial_open += 1,
            (false, false) => self.open += 1,
            (false, true) => self.corrupted += 1,
        }
    }
}

/// Whether plain sequential-storage (no erase intents, the cache the firmware had) loses a
/// key that [`run_until_two_collections`] stored on this flash, when it reads it and after it
/// stores one more item: the same image the store survives.
fn sequential_storage_alone_loses_a_key<const SECTOR: usize, const PAGES: usize>(flash: SizedFlash<SECTOR>, progress: &Progress) -> bool {
    use sequential_storage::cache::{key_pointers::ArrayKeyPointers, page_pointers::ArrayPagePointers, page_states::ArrayPageStates, Cache};
    use sequential_storage::map::{MapConfig, MapStorage};
    let cache = Cache::new(ArrayPageStates::<PAGES>::new(), ArrayPagePointers::<PAGES>::new(), ArrayKeyPointers::<u64, 4>::new());
    let mut map = MapStorage::<u64, _, _>::new(flash, MapConfig::new(region_of(SECTOR, PAGES)), cache);
    let keys: Vec<u64> = (0..progress.others_stored as u64).chain((progress.sevens.len() > 1).then_some(7)).collect();
    fn all_there<F: NorFlash, C: CacheImpl<u64>>(map: &mut MapStorage<u64, F, C>, keys: &[u64]) -> bool {
        let mut buffer = [0u8; 512];
        keys.iter().all(|key| matches!(block_on(map.fetch_item::<&[u8]>(&mut buffer, key)), Ok(Some(_))))
    }
    if !all_there(&mut map, &keys) {
        return true;
    }
    let mut buffer = [0u8; 512];
    block_on(map.store_item(&mut buffer, &100u64, &&[0x42u8; 60][..])).is_err() || !all_there(&mut map, &keys)
}

/// The run of [`run_until_two_collections`] on `PAGES` sectors, cut at each of its erases
/// (each ends a garbage collection: every live item was moved out of the sector and an erase
/// intent written) and left torn with [`TORN_ERASE_SEEDS`] seeds: the store keeps every key
/// ([`assert_survived`]). On each image plain sequential-storage is run too; returns how
/// many images it lost keys on, of how many, and how the half-erased sectors read.
fn half_finished_erases<const SECTOR: usize, const PAGES: usize>() -> (usize, usize, MarkerStates) {
    let flash = new_sized_flash::<SECTOR>();
    run(&flash, PAGES, &mut Progress::default()).unwrap();
    let log = flash.operation_log();
    let erases: Vec<usize> = (0..log.len()).filter(|&index| log[index].kind == OperationKind::Erase).collect();
    let (mut lost_without, mut images, mut states) = (0, 0, MarkerStates::default());
    for &erase in &erases {
        // The flash just before the erase (a clean cut at it), and what was stored by then.
        let before = new_sized_flash::<SECTOR>();
        before.cut_power_at(erase as u64 + 1, CutMode::Clean, 0);
        let mut progress = Progress::default();
        assert!(run(&before, PAGES, &mut progress).is_err());
        let image = before.snapshot();
        let sector = log[erase].address..log[erase].address + log[erase].length;
        for seed in 1..=TORN_ERASE_SEEDS {
            // The same as a torn cut at this erase in the run with this seed.
            let flash = SizedFlash::<SECTOR>::from_image(image.len(), &image);
            flash.cut_power_at(1, CutMode::Torn, seed);
            assert!(block_on(flash.clone().erase(sector.start, sector.end)).is_err());
            flash.restore_power();
            let torn = flash.snapshot();
            states.count(&torn, sector.start as usize..sector.end as usize);
            images += 1;
            if sequential_storage_alone_loses_a_key::<SECTOR, PAGES>(SizedFlash::from_image(torn.len(), &torn), &progress) {
                lost_without += 1;
            }
            let context = format!("{} KiB sectors, {PAGES} of them, erase at operation {} torn with seed {seed}", SECTOR / 1024, erase + 1);
            assert_survived(&flash, PAGES, &progress, 2, &context);
        }
    }
    println!(
        "half-finished erases, {} KiB sectors, {PAGES} of them: {images} images ({} erases x {TORN_ERASE_SEEDS} seeds) all survived; \
         plain sequential-storage lost keys on {lost_without}; the sectors read {states:?}",
        SECTOR / 1024,
        erases.len()
    );
    (lost_without, images, states)
}

/// A power cut during the erase that ends a garbage collection, after every live item was
/// moved out of the sector, leaves that sector half erased (random bits set). Every key must
/// still read back, also after the next store. The same images are read by plain
/// sequential-storage 8.0.2 (the attack on the test): it loses keys on some of them, so the
/// test can fail. When the first byte of the half-erased sector reads as "in use" and the
/// last as not, the map takes it for the sector being written, and every fetch answers
/// "absent"; when both read "in use", the next store takes the other sector for a
/// half-finished migration into it, erases it and copies the garbage back. Every one of the
/// four states a sector can read as is among the images. The store survives them with its
/// erase intents (`homemx_spool::key_value::erase_intent`).
fn a_half_finished_erase_keeps_every_key<const SECTOR: usize>() {
    let (lost_without, images, states) = half_finished_erases::<SECTOR, 2>();
    assert!(lost_without > 0, "plain sequential-storage survived all {images} images: the test could not fail");
    assert!(states.closed > 0 && states.partial_open > 0 && states.open > 0 && states.corrupted > 0, "{states:?}");
}

for_each_sector_size!(a_half_finished_erase_keeps_every_key);

/// The same in a ring of four 4 KiB sectors (the sector erased is not the one the map
/// migrated out of last time but the one after it).
#[test]
fn a_half_finished_erase_keeps_every_key_in_a_ring_of_four_sectors() {
    let (lost_without, images, states) = half_finished_erases::<4096, 4>();
    assert!(lost_without > 0, "plain sequential-storage survived all {images} images: the test could not fail");
    assert!(states.closed > 0 && states.partial_open > 0 && states.open > 0 && states.corrupted > 0, "{states:?}");
}

/// The store's own repair (at its first operation: erasing the sector the newest erase intent
/// names, the only flash operation it makes) cut, clean and torn with several seeds, once and
/// twice in a row: the next mount finishes it and every key is there. The images are those of
/// [`half_finished_erases`] for the first erase of the run.
fn a_cut_repair_is_finished_by_the_next_mount<const SECTOR: usize>() {
    let flash = new_sized_flash::<SECTOR>();
    run(&flash, 2, &mut Progress::default()).unwrap();
    let log = flash.operation_log();
    let erase = (0..log.len()).find(|&index| log[index].kind == OperationKind::Erase).unwrap();
    let sector = log[erase].address..log[erase].address + log[erase].length;
    let mut progress = Progress::default();
    flash.restore_power();
    let flash = new_sized_flash::<SECTOR>();
    flash.cut_power_at(erase as u64 + 1, CutMode::Torn, 1);
    assert!(run(&flash, 2, &mut progress).is_err());
    flash.restore_power();
    let torn = flash.snapshot();
    // The repair is one erase.
    let copy = SizedFlash::<SECTOR>::from_image(torn.len(), &torn);
    let before = copy.mutating_operations();
    block_on(open_in(&copy, 2, 5).mount()).unwrap();
    assert_eq!(copy.mutating_operations() - before, 1, "the repair erases the half-erased sector");
    assert!(copy.snapshot()[sector.start as usize..sector.end as usize].iter().all(|&byte| byte == 0xFF));
    block_on(open_in(&copy, 2, 5).mount()).unwrap();
    assert_eq!(copy.mutating_operations() - before, 1, "a second mount finds nothing to repair");
    let mut cases = 0;
    for (first, second) in [(CutMode::Clean, None), (CutMode::Torn, None), (CutMode::Torn, Some(CutMode::Torn)), (CutMode::Clean, Some(CutMode::Torn))] {
        for seed in 1..=8u64 {
            let context = format!("{} KiB sectors, repair cut {first:?} then {second:?}, seed {seed}", SECTOR / 1024);
            let flash = SizedFlash::<SECTOR>::from_image(torn.len(), &torn);
            for mode in [Some(first), second].into_iter().flatten() {
                flash.cut_power_at(1, mode, seed);
                assert!(block_on(open_in(&flash, 2, 6).mount()).is_err(), "{context}: the cut must stop the repair");
                flash.restore_power();
            }
            assert_survived(&flash, 2, &progress, 2, &context);
            cases += 1;
        }
    }
    println!("cut repairs, {} KiB sectors: {cases} cases survived", SECTOR / 1024);
}

for_each_sector_size!(a_cut_repair_is_finished_by_the_next_mount);

/// A half-done erase without a restart: the store that was running when the erase failed
/// (here a torn erase and the power back, as a flash driver's error would leave it) is used
/// on; its next operation repairs as a mount would, and every key is there. Without that the
/// map would take the half-erased sector for a migration's source and the store could only
/// refuse to erase the sector with the copies.
#[test]
fn the_same_store_goes_on_after_a_failed_erase() {
    const SECTOR: usize = 4096;
    let flash = new_sized_flash::<SECTOR>();
    run(&flash, 2, &mut Progress::default()).unwrap();
    let log = flash.operation_log();
    let erases: Vec<usize> = (0..log.len()).filter(|&index| log[index].kind == OperationKind::Erase).collect();
    for &erase in &erases {
        for seed in 1..=16u64 {
            let context = format!("erase at operation {} torn with seed {seed}, the same store on", erase + 1);
            let flash = new_sized_flash::<SECTOR>();
            flash.cut_power_at(erase as u64 + 1, CutMode::Torn, seed);
            let mut store = open_in(&flash, 2, 1);
            let mut progress = Progress::default();
            assert!(block_on(run_until_two_collections(&mut store, &flash, &mut progress)).is_err());
            flash.restore_power();
            block_on(assert_kept(&mut store, &progress, Seven::Newest(2), &context));
            block_on(store.store(7, b"goes on")).unwrap_or_else(|error| panic!("{context}: {error:?}"));
            block_on(assert_kept(&mut store, &progress, Seven::Exactly(b"goes on"), &context));
            block_on(assert_kept(&mut open_in(&flash, 2, 2), &progress, Seven::Exactly(b"goes on"), &context));
        }
    }
}

/// The erase intents keep sequential-storage's format: plain sequential-storage reads every
/// key of an image with intents, and an image without any (as the store wrote before the
/// intents) opens with the store, reads the same, and gets its first intent with its next
/// store (found here by the record's header: an erased item of 24 bytes).
#[test]
fn images_with_and_without_erase_intents_read_the_same() {
    use sequential_storage::cache::Cache;
    use sequential_storage::map::{MapConfig, MapStorage};
    const SECTOR: usize = 4096;
    let intents = |image: &[u8]| (0..image.len() - 8).step_by(4).filter(|&at| image[at..at + 8] == [0, 0, 0, 0, 24, 0, 0xAB, 0xF7]).count();
    let flash = new_sized_flash::<SECTOR>();
    let mut progress = Progress::default();
    run(&flash, 2, &mut progress).unwrap();
    let with = flash.snapshot();
    assert!(intents(&with) >= 1, "the run leaves an intent");
    // Every item, oldest first, as plain sequential-storage reads the image with intents.
    let mut items: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut map = MapStorage::<u64, _, _>::new(SizedFlash::<SECTOR>::from_image(with.len(), &with), MapConfig::new(region_of(SECTOR, 2)), Cache::new_uncached());
    let mut buffer = [0u8; 512];
    block_on(async {
        let mut iterator = map.fetch_all_items(&mut buffer).await.unwrap();
        let mut data = [0u8; 512];
        while let Some((key, value)) = iterator.next::<&[u8]>(&mut data).await.unwrap() {
            items.push((key, value.to_vec()));
        }
    });
    assert!(items.iter().any(|(key, _)| *key == 6) && items.iter().any(|(key, _)| *key == 7), "plain sequential-storage reads the keys");
    // The same items written by plain sequential-storage: no intent.
    let without = new_sized_flash::<SECTOR>();
    let mut map = MapStorage::<u64, _, _>::new(without.clone(), MapConfig::new(region_of(SECTOR, 2)), Cache::new_uncached());
    block_on(async {
        for (key, value) in &items {
            map.store_item(&mut buffer, key, &value.as_slice()).await.unwrap();
        }
    });
    assert_eq!(intents(&without.snapshot()), 0);
    block_on(assert_kept(&mut open_in(&without, 2, 7), &progress, Seven::Exactly(progress.sevens.last().unwrap()), "without intents"));
    assert_eq!(intents(&without.snapshot()), 0, "reading writes nothing");
    let mut store = open_in(&without, 2, 8);
    block_on(store.store(8, b"the first store after")).unwrap();
    assert_eq!(intents(&without.snapshot()), 1, "the first store writes the first intent");
    block_on(churn_until_erased(&mut store, &without, 7, 2)).map(|last| progress.sevens.push(last)).unwrap();
    block_on(assert_kept(&mut open_in(&without, 2, 9), &progress, Seven::Exactly(progress.sevens.last().unwrap()), "after two more collections"));
}
