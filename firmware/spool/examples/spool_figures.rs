//! Prints the spool's figures for the closing note: flash work per 10 KB message, erases
//! before commit, RAM of the queue structures, recovery of a full 4 MB spool, and the
//! key-value store's flash work (its erase intents, its mount, a store without the page
//! pointer cache).
//!
//! Run: `cargo run -p homemx-spool --example spool_figures --release`

use homemx_spool::testing::{block_on, SimulatedFlash, TestRandom};
use homemx_spool::{
    Envelope, KeyValueStore, MessageReader, MessageWriter, Spool, Statistics, CHUNK_CAPACITY, ENVELOPE_CAPACITY,
    MAX_RECIPIENTS,
};
use std::time::Instant;

type Flash = SimulatedFlash<4, 4096>;
const KEY: [u8; 32] = [0x42; 32];
/// The QEMU board's 8 MiB flash; the spool gets the upper 4 MiB.
const REGION: core::ops::Range<u32> = 0x40_0000..0x80_0000;
const MESSAGE: usize = 10 * 1024;
/// ChaCha20-Poly1305 on a Cortex-M4 (platform notes' cost anchor), instructions per byte.
const AEAD_INSTRUCTIONS_PER_BYTE: f64 = 43.0;

fn message(seed: u8) -> Vec<u8> {
    (0..MESSAGE).map(|index| b' ' + ((index as u32 * 31 + seed as u32) % 90) as u8).collect()
}

fn main() {
    println!("homemx-spool figures (flash: 8 MiB NOR, WRITE_SIZE 4, ERASE_SIZE 4096; spool region 4 MiB)");
    println!();
    per_message();
    println!();
    per_message_as_the_firmware_runs();
    println!();
    many_recipients();
    println!();
    ram();
    println!();
    recovery();
    println!();
    key_value_store();
}

fn per_message() {
    let flash = Flash::new(8 * 1024 * 1024);
    let mut spool: Spool<_, _, 1024, 128> = Spool::new(flash, REGION, &KEY, TestRandom::new(1)).unwrap();
    let envelope = Envelope::new(b"alice@example.net", &[b"bob@example.org", b"carol@example.org"]).unwrap();
    let rounds = 200;
    let mut commit_total = Statistics::default();
    let mut erases_before_commit = 0;
    let mut worst_ratio = 0f64;
    let mut commit_time = 0f64;
    let before_all = block_on(async {
        spool.mount().await.unwrap();
        spool.maintain().await.unwrap();
        spool.statistics()
    });
    for round in 0..rounds {
        let data = message(round as u8);
        block_on(async {
            let started = Instant::now();
            let mut writer = spool.begin_message(&envelope, MESSAGE as u32).await.unwrap();
            for part in data.chunks(512) {
                spool.append(&mut writer, part).await.unwrap();
            }
            let report = spool.commit(writer).await.unwrap();
            commit_time += started.elapsed().as_secs_f64();
            erases_before_commit += report.work.sectors_erased;
            worst_ratio = worst_ratio.max(report.work.bytes_programmed as f64 / MESSAGE as f64);
            commit_total.bytes_programmed += report.work.bytes_programmed;
            commit_total.program_operations += report.work.program_operations;
            spool.mark_delivered(report.id, 0).await.unwrap();
            spool.mark_delivered(report.id, 1).await.unwrap();
            spool.delete(report.id).await.unwrap();
        });
    }
    let lifetime = spool.statistics().since(&before_all);
    let rounds_f = rounds as f64;
    println!("per 10 KB message ({MESSAGE} bytes, 2 recipients, appended in 512-byte pieces, {rounds} messages):");
    println!("  begin..commit: {:.0} bytes programmed = {:.3}x the message (worst {:.3}x), {:.1} program operations",
        commit_total.bytes_programmed as f64 / rounds_f,
        commit_total.bytes_programmed as f64 / rounds_f / MESSAGE as f64,
        worst_ratio,
        commit_total.program_operations as f64 / rounds_f);
    println!("  erases before commit (\"250\"): {erases_before_commit} in {rounds} messages");
    println!("  whole life (begin..commit, 2 delivery marks, delete): {:.0} bytes programmed = {:.3}x, {:.2} sectors erased",
        lifetime.bytes_programmed as f64 / rounds_f,
        lifetime.bytes_programmed as f64 / rounds_f / MESSAGE as f64,
        lifetime.sectors_erased as f64 / rounds_f);
    println!("  host time begin..commit: {:.1} us per message (x86, release)", commit_time / rounds_f * 1e6);
    println!("  Cortex-M4 estimate begin..commit: {:.2} M instructions (AEAD {AEAD_INSTRUCTIONS_PER_BYTE} instr/byte over {:.0} bytes sealed)",
        commit_total.bytes_programmed as f64 / rounds_f * AEAD_INSTRUCTIONS_PER_BYTE / 1e6,
        commit_total.bytes_programmed as f64 / rounds_f);
}

/// The firmware's way: no `SIZE=` (space reserved as data arrives), the counter mark kept in
/// the key-value store (same flash) and persisted after every delivery.
fn per_message_as_the_firmware_runs() {
    let flash = Flash::new(8 * 1024 * 1024);
    let mut spool: Spool<_, _, 1024, 128> = Spool::new(flash.clone(), REGION, &KEY, TestRandom::new(5)).unwrap();
    let mut store = KeyValueStore::new(flash.clone(), 0x3F_0000..REGION.start, &KEY, TestRandom::new(6)).unwrap();
    let mark_key = KeyValueStore::<Flash, TestRandom>::key_for("spool", b"counter-mark");
    let envelope = Envelope::new(b"alice@example.net", &[b"bob@example.org", b"carol@example.org"]).unwrap();
    let rounds = 200u64;
    let mut before_commit = 0u64;
    let mut erases_before_commit = 0;
    let mut marks_persisted = 0;
    block_on(async {
        spool.mount().await.unwrap();
        spool.guard_counters(None).unwrap();
        spool.maintain().await.unwrap();
    });
    let mut persist = |spool: &mut Spool<Flash, TestRandom, 1024, 128>| {
        if let Some(mark) = spool.counter_mark_due() {
            block_on(store.store(mark_key, &mark.encode())).unwrap();
            spool.counter_mark_persisted(mark);
            marks_persisted += 1;
        }
    };
    persist(&mut spool);
    let flash_before = flash.counters();
    for round in 0..rounds {
        let data = message(round as u8);
        let report = block_on(async {
            let mut writer = spool.begin_message(&envelope, 0).await.unwrap();
            for part in data.chunks(512) {
                spool.append(&mut writer, part).await.unwrap();
            }
            spool.commit(writer).await.unwrap()
        });
        before_commit += report.work.bytes_programmed;
        erases_before_commit += report.work.sectors_erased;
        block_on(async {
            spool.mark_delivered(report.id, 0).await.unwrap();
            spool.mark_delivered(report.id, 1).await.unwrap();
            spool.delete(report.id).await.unwrap();
        });
        persist(&mut spool);
    }
    let whole = flash.counters();
    println!("per 10 KB message as the firmware runs it (no SIZE=, counter mark persisted after each delivery, {rounds} messages):");
    println!("  begin..commit: {:.0} bytes programmed = {:.3}x the message; erases before commit (\"250\"): {erases_before_commit}",
        before_commit as f64 / rounds as f64, before_commit as f64 / rounds as f64 / MESSAGE as f64);
    println!("  whole life incl. the counter mark: {:.0} bytes programmed = {:.3}x, {:.2} sectors erased (spool and key-value store); {marks_persisted} marks persisted",
        (whole.bytes_programmed - flash_before.bytes_programmed) as f64 / rounds as f64,
        (whole.bytes_programmed - flash_before.bytes_programmed) as f64 / rounds as f64 / MESSAGE as f64,
        (whole.sectors_erased - flash_before.sectors_erased) as f64 / rounds as f64);
}

fn many_recipients() {
    let flash = Flash::new(8 * 1024 * 1024);
    let mut spool: Spool<_, _, 1024, 128> = Spool::new(flash, REGION, &KEY, TestRandom::new(4)).unwrap();
    let owned: Vec<Vec<u8>> = (0..MAX_RECIPIENTS).map(|index| format!("recipient{index:03}@example.org").into_bytes()).collect();
    let list: Vec<&[u8]> = owned.iter().map(|a| a.as_slice()).collect();
    let envelope = Envelope::new(b"alice@example.net", &list).unwrap().with_queued_at(1_700_000_000);
    let work = block_on(async {
        spool.mount().await.unwrap();
        let mut writer = spool.begin_message(&envelope, MESSAGE as u32).await.unwrap();
        spool.append(&mut writer, &message(1)).await.unwrap();
        spool.commit(writer).await.unwrap().work
    });
    println!("per 10 KB message to {MAX_RECIPIENTS} recipients (envelope {} bytes in {} records, at most {ENVELOPE_CAPACITY}):",
        envelope.encoded_length(), envelope.part_count());
    println!("  begin..commit: {} bytes programmed = {:.3}x the message, {} program operations, {} erases",
        work.bytes_programmed, work.bytes_programmed as f64 / MESSAGE as f64, work.program_operations, work.sectors_erased);
}

fn ram() {
    type Small = Spool<Flash, TestRandom, 1024, 128>;
    type Large = Spool<Flash, TestRandom, 1024, 512>;
    let per_message_slot = (std::mem::size_of::<Spool<Flash, TestRandom, 1024, 129>>() - std::mem::size_of::<Small>()) as f64;
    let per_sector = (std::mem::size_of::<Spool<Flash, TestRandom, 1040, 128>>() - std::mem::size_of::<Small>()) as f64 / 16.0;
    println!("RAM (size_of, host layout; the flash handle and random source are a few bytes on target):");
    println!("  Spool<1024 sectors, 128 messages>: {} bytes", std::mem::size_of::<Small>());
    println!("  Spool<1024 sectors, 512 messages>: {} bytes", std::mem::size_of::<Large>());
    println!("  per sector: {per_sector} bytes, per message slot: {per_message_slot} bytes");
    println!("  MessageWriter (one per message being received): {} bytes", std::mem::size_of::<MessageWriter>());
    println!("  Envelope (borrowed addresses, {MAX_RECIPIENTS} slots): {} bytes on this host (16-byte slices; 8-byte on a 32-bit target)", std::mem::size_of::<Envelope>());
    println!("  MessageReader (one per delivery): {} bytes; chunk buffer for reading: {CHUNK_CAPACITY} bytes", std::mem::size_of::<MessageReader>());
    println!("  KeyValueStore: {} bytes", std::mem::size_of::<KeyValueStore<Flash, TestRandom>>());
    println!("  a message of any length needs no more (10 MB streams through one writer)");
}

fn recovery() {
    let flash = Flash::new(8 * 1024 * 1024);
    let mut spool: Spool<_, _, 1024, 512> = Spool::new(flash.clone(), REGION, &KEY, TestRandom::new(2)).unwrap();
    let envelope = Envelope::new(b"alice@example.net", &[b"bob@example.org"]).unwrap();
    let mut stored = 0;
    block_on(async {
        spool.mount().await.unwrap();
        while spool.can_accept(MESSAGE as u32) {
            let mut writer = spool.begin_message(&envelope, MESSAGE as u32).await.unwrap();
            spool.append(&mut writer, &message(stored as u8)).await.unwrap();
            let report = spool.commit(writer).await.unwrap();
            if stored % 3 == 0 {
                spool.set_next_retry(report.id, 600).await.unwrap();
            }
            stored += 1;
        }
    });
    let space = spool.space();
    drop(spool);
    let counters_before = flash.counters();
    let mut spool: Spool<_, _, 1024, 512> = Spool::new(flash.clone(), REGION, &KEY, TestRandom::new(3)).unwrap();
    let started = Instant::now();
    let report = block_on(spool.mount()).unwrap();
    let elapsed = started.elapsed();
    let reads = flash.counters().read_operations - counters_before.read_operations;
    println!("recovery of a full 4 MiB spool ({stored} messages of 10 KB; {} of {} sectors in use, {} erased):",
        space.sectors_in_use, space.sectors, space.sectors_erased);
    println!("  found {} messages, clean: {}", report.messages_found, report.is_clean());
    println!("  flash read: {} bytes in {reads} read operations", report.bytes_read);
    println!("  host time: {:.1} ms (x86, release)", elapsed.as_secs_f64() * 1e3);
    println!("  Cortex-M4 estimate: {:.0} M instructions for authenticating every record ({:.2} s at 168 MHz), plus reading {:.1} MB from flash",
        report.bytes_read as f64 * AEAD_INSTRUCTIONS_PER_BYTE / 1e6,
        report.bytes_read as f64 * AEAD_INSTRUCTIONS_PER_BYTE / 168e6,
        report.bytes_read as f64 / 1e6);
}

/// The key-value store as the QEMU board runs it (64 sectors of 4 KiB, the page-state and key
/// cache of 48 keys), against plain sequential-storage with the cache the store had before its
/// erase intents (page pointers too), storing items of the same sizes: 60 settings of 40 to
/// 250 bytes, then updates of 12 of them until 200 sectors were erased.
fn key_value_store() {
    use sequential_storage::cache::{key_pointers::ArrayKeyPointers, page_pointers::ArrayPagePointers, page_states::ArrayPageStates, Cache};
    use sequential_storage::map::{MapConfig, MapStorage};
    const SECTORS: usize = 64;
    const REGION: core::ops::Range<u32> = 0..(SECTORS * 4096) as u32;
    const ERASES: u64 = 200;
    // Sealing adds 41 bytes (flags, nonce, tag) to a value.
    let length = |step: u64| 40 + (step * 37 % 211) as usize;
    let key = |step: u64| if step < 60 { step } else { step % 12 };
    let run = |store: &mut dyn FnMut(u64, &[u8]), flash: &Flash| {
        let start = flash.counters();
        let mut stores = 0u64;
        for step in 0.. {
            if flash.counters().sectors_erased - start.sectors_erased >= ERASES {
                break;
            }
            store(key(step), &vec![step as u8; length(step)]);
            stores += 1;
        }
        let end = flash.counters();
        (stores, end.bytes_read - start.bytes_read, end.read_operations - start.read_operations, end.bytes_programmed - start.bytes_programmed)
    };
    let flash = Flash::new(8 * 1024 * 1024);
    let mut store = KeyValueStore::<Flash, TestRandom, homemx_spool::PageAndKeyCache<SECTORS, 48>>::cached(flash.clone(), REGION, &KEY, TestRandom::new(7)).unwrap();
    let started = Instant::now();
    let (stores, read, reads, programmed) = run(&mut |key, value| block_on(store.store(key, value)).unwrap(), &flash);
    let elapsed = started.elapsed().as_secs_f64();
    let plain_flash = Flash::new(8 * 1024 * 1024);
    let cache = Cache::new(ArrayPageStates::<SECTORS>::new(), ArrayPagePointers::<SECTORS>::new(), ArrayKeyPointers::<u64, 48>::new());
    let mut map = MapStorage::<u64, _, _>::new(plain_flash.clone(), MapConfig::new(REGION), cache);
    let mut buffer = [0u8; 512];
    let (plain_stores, plain_read, plain_reads, plain_programmed) = run(
        &mut |key, value| {
            let sealed = vec![0x5A; value.len() + 41];
            block_on(map.store_item(&mut buffer, &key, &sealed.as_slice())).unwrap()
        },
        &plain_flash,
    );
    println!("key-value store, {SECTORS} sectors of 4 KiB (the QEMU board's), {stores} stores through {ERASES} sector erases:");
    println!("  programmed: {:.1} bytes per store; plain sequential-storage {:.1} ({:.0} bytes more per sector erased: the erase intents)",
        programmed as f64 / stores as f64, plain_programmed as f64 / plain_stores as f64,
        (programmed as f64 - plain_programmed as f64 * stores as f64 / plain_stores as f64) / ERASES as f64);
    println!("  read per store: {:.0} bytes in {:.1} reads; plain sequential-storage with page pointers {:.0} bytes in {:.1} reads",
        read as f64 / stores as f64, reads as f64 / stores as f64, plain_read as f64 / plain_stores as f64, plain_reads as f64 / plain_stores as f64);
    println!("  host time: {:.1} us per store (x86, release)", elapsed / stores as f64 * 1e6);
    drop(store);
    let mut store = KeyValueStore::<Flash, TestRandom, homemx_spool::PageAndKeyCache<SECTORS, 48>>::cached(flash.clone(), REGION, &KEY, TestRandom::new(8)).unwrap();
    let before = flash.counters();
    let started = Instant::now();
    block_on(store.mount()).unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let after = flash.counters();
    println!("  mount (the intent scan): {} bytes read in {} reads, {} erases, {:.0} us on the host",
        after.bytes_read - before.bytes_read, after.read_operations - before.read_operations,
        after.sectors_erased - before.sectors_erased, elapsed * 1e6);
}
