//! The persisted counter mark (issue 12, finding 11): sector sequences and message ids never
//! repeat, even after the newest sectors are erased; a rolled-back spool (old sectors
//! written back) or a rolled-back key-value store is refused as tampering; power cuts at
//! every flash operation (spool and key-value store alike, clean and torn) never cause a
//! false alarm or a repeat.
//!
//! The mark lives in the encrypted key-value store on the same flash, below the queue's
//! region, exactly as the firmware keeps it.

mod common;

use common::*;
use embedded_storage_async::nor_flash::NorFlash;
use homemx_spool::testing::{block_on, CutMode, TestRandom};
use homemx_spool::{CounterMark, KeyValueStore, MessageId, SpoolError};

type Store = KeyValueStore<Flash, TestRandom>;
/// The key-value store's region: the 8 KiB below the queue's region.
const STORE_REGION: core::ops::Range<u32> = 0x0..0x2000;

fn mark_key() -> u64 {
    Store::key_for("spool", b"counter-mark")
}

/// Persists the mark the spool asks for, if any (what the firmware does when idle).
async fn persist(spool: &mut TestSpool, store: &mut Store) -> Result<(), Error> {
    if let Some(mark) = spool.counter_mark_due() {
        store.store(mark_key(), &mark.encode()).await?;
        spool.counter_mark_persisted(mark);
    }
    Ok(())
}

/// Boots: mounts the spool, checks it against the persisted mark, persists the next mark.
async fn open_guarded(flash: &Flash, seed: u64) -> Result<(TestSpool, Store), Error> {
    let mut spool = TestSpool::new(flash.clone(), REGION, &KEY, TestRandom::new(seed))?;
    spool.mount().await?;
    let mut store = Store::new(flash.clone(), STORE_REGION, &KEY, TestRandom::new(seed + 1000))?;
    let mut bytes = [0u8; CounterMark::ENCODED_SIZE];
    let mark = match store.fetch(mark_key(), &mut bytes).await? {
        Some(length) => Some(CounterMark::decode(&bytes[..length]).ok_or(SpoolError::Corrupt)?),
        None => None,
    };
    spool.guard_counters(mark)?;
    persist(&mut spool, &mut store).await?;
    spool.maintain().await?;
    persist(&mut spool, &mut store).await?;
    Ok((spool, store))
}

/// Erases the whole queue region (after a drain only the newest sector is left in it).
async fn erase_queue_region(flash: &Flash) {
    let mut flash = flash.clone();
    flash.erase(REGION.start, REGION.end).await.unwrap();
}

#[test]
fn ids_and_sequences_never_repeat_after_the_newest_sector_is_erased() {
    let flash = new_flash();
    let mut used_ids: Vec<MessageId> = Vec::new();
    let mut sequences_used_below = 0;
    block_on(async {
        for boot in 0..5 {
            let (mut spool, mut store) = open_guarded(&flash, boot).await.unwrap();
            assert!(spool.next_sequence() >= sequences_used_below, "boot {boot}: a sector sequence would repeat");
            let data = message_bytes(boot as u32, 6_000);
            let id = enqueue(&mut spool, &data, 1, 1000).await.unwrap();
            assert!(!used_ids.contains(&id), "boot {boot}: message id {id:?} repeated (used: {used_ids:?})");
            used_ids.push(id);
            sequences_used_below = spool.next_sequence();
            persist(&mut spool, &mut store).await.unwrap();
            spool.delete(id).await.unwrap();
            persist(&mut spool, &mut store).await.unwrap();
            assert_eq!(spool.space().sectors_in_use, 1, "drained: only the newest sector is left");
            drop(spool);
            erase_queue_region(&flash).await;
        }
    });
}

#[test]
fn a_rolled_back_spool_is_tampering() {
    let flash = new_flash();
    block_on(async {
        let (mut spool, mut store) = open_guarded(&flash, 1).await.unwrap();
        let first = enqueue(&mut spool, &message_bytes(1, 9_000), 1, 1000).await.unwrap();
        persist(&mut spool, &mut store).await.unwrap();
        let snapshot = flash.snapshot();
        // Write more: the first message is delivered and deleted (its sectors erased), a
        // second one comes in.
        enqueue(&mut spool, &message_bytes(2, 3_000), 1, 1000).await.unwrap();
        spool.mark_delivered(first, 0).await.unwrap();
        spool.delete(first).await.unwrap();
        persist(&mut spool, &mut store).await.unwrap();
        drop((spool, store));
        // Untouched, the next boot is fine.
        let (spool, store) = open_guarded(&flash, 2).await.expect("no rollback, no alarm");
        assert_eq!(spool.messages().count(), 1);
        drop((spool, store));
        // Restore the queue's region of the snapshot: the deleted message's sectors are back.
        let queue = REGION.start as usize..REGION.end as usize;
        flash.overwrite(queue.start, &snapshot[queue]);
        let result = open_guarded(&flash, 3).await;
        assert!(matches!(result, Err(SpoolError::RolledBack)), "a rolled-back spool must be refused: {:?}", result.err());
    });
}

#[test]
fn a_rolled_back_key_value_store_is_tampering() {
    let flash = new_flash();
    block_on(async {
        let (mut spool, mut store) = open_guarded(&flash, 1).await.unwrap();
        persist(&mut spool, &mut store).await.unwrap();
        let snapshot = flash.snapshot();
        // Write more: enough messages that the sequences go past the old mark's limit.
        let start = spool.next_sequence();
        while spool.next_sequence() < start + 3 * 16 {
            let id = enqueue(&mut spool, &message_bytes(3, 5_000), 1, 1000).await.unwrap();
            persist(&mut spool, &mut store).await.unwrap();
            spool.delete(id).await.unwrap();
            persist(&mut spool, &mut store).await.unwrap();
        }
        drop((spool, store));
        // Restore the key-value store's region: its mark is older than the spool.
        let region = STORE_REGION.start as usize..STORE_REGION.end as usize;
        flash.overwrite(region.start, &snapshot[region]);
        let result = open_guarded(&flash, 2).await;
        assert!(matches!(result, Err(SpoolError::RolledBack)), "a rolled-back mark must be refused: {:?}", result.err());
    });
}

/// What the scenario saw the spool's counters reach (in RAM, so also at the cut).
#[derive(Default, Debug)]
struct Ledger {
    next_sequence: u32,
    next_message: u32,
}

impl Ledger {
    fn note(&mut self, spool: &TestSpool) {
        self.next_sequence = self.next_sequence.max(spool.next_sequence());
        self.next_message = self.next_message.max(spool.next_message_id().0);
    }
}

/// Three boots of messages in and deleted, the mark persisted as the firmware does, the
/// spool drained at the end of each boot.
async fn scenario(flash: &Flash, ledger: &mut Ledger) -> Result<(), Error> {
    for boot in 0..3u64 {
        let (mut spool, mut store) = open_guarded(flash, 10 + boot).await?;
        ledger.note(&spool);
        let mut queued = Vec::new();
        for number in 0..3u32 {
            let result = enqueue(&mut spool, &message_bytes(number, 2_500 + 1_500 * number as usize), 1, 900).await;
            ledger.note(&spool);
            queued.push(result?);
            let result = persist(&mut spool, &mut store).await;
            ledger.note(&spool);
            result?;
        }
        for id in queued {
            let result = spool.delete(id).await;
            ledger.note(&spool);
            result?;
            persist(&mut spool, &mut store).await?;
        }
    }
    Ok(())
}

fn sweep(mode: CutMode) {
    let flash = new_flash();
    block_on(scenario(&flash, &mut Ledger::default())).unwrap();
    let total = flash.mutating_operations();
    for cut in 1..=total {
        let flash = new_flash();
        flash.cut_power_at(cut, mode, cut * 7919 + 1);
        let mut ledger = Ledger::default();
        assert!(block_on(scenario(&flash, &mut ledger)).is_err(), "the cut at {cut} must stop the scenario");
        flash.restore_power();
        let context = format!("cut at operation {cut} of {total} ({mode:?})");
        block_on(async {
            let (mut spool, mut store) = open_guarded(&flash, 99).await.unwrap_or_else(|error| panic!("{context}: {error:?}"));
            assert!(spool.next_sequence() >= ledger.next_sequence, "{context}: sequence would repeat");
            assert!(spool.next_message_id().0 >= ledger.next_message, "{context}: message id would repeat");
            let id = enqueue(&mut spool, &message_bytes(9, 3_000), 1, 1000).await.unwrap();
            assert!(id.0 >= ledger.next_message, "{context}");
            persist(&mut spool, &mut store).await.unwrap();
        });
    }
    println!("counter mark: {total} cut points covered ({mode:?})");
}

#[test]
fn power_cuts_never_repeat_counters_or_raise_false_alarms_clean() {
    sweep(CutMode::Clean);
}

#[test]
fn power_cuts_never_repeat_counters_or_raise_false_alarms_torn() {
    sweep(CutMode::Torn);
}
