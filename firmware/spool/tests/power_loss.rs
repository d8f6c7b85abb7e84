//! Power loss: a realistic scenario is cut at every program and erase, clean and torn, on
//! sector sizes of 4, 8, 16, 64 and 128 KiB.
//!
//! Scenario: several messages in (one spanning sectors, two with 110 and 128 recipients,
//! whose envelopes take three and four records), some mid-delivery, some deleted, a
//! restart in between, a message with a multi-record envelope left uncommitted at the
//! restart, another in flight at the end. For every operation N, with the N-th operation
//! dropped and with it torn (so also between and within the envelope records of a message),
//! recovery must find every acknowledged message intact with its envelope and queued-at
//! time, no unacknowledged one, nothing corrupt, delivery marks that were acknowledged, and
//! a spool that keeps working.
//!
//! Message lengths scale with the sector size (a message of 2.5 sectors at 4 KiB is one of
//! 2.5 sectors at 128 KiB), so every size sees the same sector crossings, sector closings,
//! reclaims and wrap-arounds. A run has about 100 operations at 4 KiB and 30 times as many at
//! 128 KiB (1 KiB chunks): up to [`FULL_SWEEP`] operations every one is cut; beyond that,
//! every operation but the chunk records inside a sector is (about 70), and an even sample
//! of [`CHUNK_SAMPLES`] of those.

mod common;

use common::*;
use homemx_spool::testing::{block_on, CutMode};
use homemx_spool::{Envelope, MessageId, RecipientState, ENVELOPE_CAPACITY};
use std::collections::BTreeMap;

#[derive(Default, Debug)]
struct Ledger {
    /// Messages whose commit returned Ok, by id, with their recipient count.
    committed: BTreeMap<MessageId, (Vec<u8>, usize)>,
    /// A commit under way when the power went: may or may not exist, intact if it does.
    committing: Option<(MessageId, Vec<u8>, usize)>,
    /// Deletions that returned Ok.
    deleted: Vec<MessageId>,
    /// A deletion under way.
    deleting: Option<MessageId>,
    /// Delivery marks that returned Ok.
    delivered: Vec<(MessageId, usize)>,
}

/// The recipients of a message with `count` of them (long enough that 110 take three
/// envelope records and 128 four).
fn addresses(count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|index| format!("rcpt-{index:03}@example-long.org").into_bytes()).collect()
}

/// The queued-at time of a message of `length` bytes.
fn queued_at(length: usize) -> u64 {
    1_700_000_000 + length as u64
}

fn envelope_of(owned: &[Vec<u8>], length: usize) -> Envelope<'_> {
    // The envelope borrows the list; a test's few lists live as long as the test.
    let list: &[&[u8]] = Vec::leak(owned.iter().map(|a| a.as_slice()).collect());
    Envelope::new(b"sender@example.net", list).unwrap().with_queued_at(queued_at(length))
}

/// Runs of up to this many operations are cut at every one (4 to 16 KiB sectors).
const FULL_SWEEP: usize = 240;
/// Longer runs (64 and 128 KiB sectors) are cut at every operation but the chunk records
/// inside a sector, and at this many of those.
const CHUNK_SAMPLES: usize = 16;

async fn store<const SECTOR: usize>(
    spool: &mut SizedSpool<SECTOR>,
    ledger: &mut Ledger,
    seed: u32,
    length: usize,
) -> Result<MessageId, Error> {
    store_to(spool, ledger, seed, length, 2).await
}

async fn store_to<const SECTOR: usize>(
    spool: &mut SizedSpool<SECTOR>,
    ledger: &mut Ledger,
    seed: u32,
    length: usize,
    recipients: usize,
) -> Result<MessageId, Error> {
    let data = message_bytes(seed, length);
    let owned = addresses(recipients);
    let envelope = envelope_of(&owned, length);
    let mut writer = spool.begin_message(&envelope, length as u32).await?;
    for part in data.chunks(700) {
        spool.append(&mut writer, part).await?;
    }
    let id = writer.id();
    ledger.committing = Some((id, data.clone(), recipients));
    spool.commit(writer).await?;
    ledger.committing = None;
    ledger.committed.insert(id, (data, recipients));
    Ok(id)
}

/// Checks a present message's data and envelope.
async fn check_message<const SECTOR: usize>(spool: &mut SizedSpool<SECTOR>, id: MessageId, data: &[u8], recipients: usize, context: &str) {
    assert_eq!(read_all(spool, id).await.unwrap(), data, "{context}: {id:?} differs");
    let mut buffer = [0u8; ENVELOPE_CAPACITY];
    let envelope = spool.read_envelope(id, &mut buffer).await.unwrap();
    let owned = addresses(recipients);
    assert!(envelope.recipients().eq(envelope_of(&owned, data.len()).recipients()), "{context}: {id:?} envelope");
    assert_eq!(envelope.queued_at(), queued_at(data.len()), "{context}");
    assert_eq!(spool.message(id).unwrap().queued_at, queued_at(data.len()), "{context}");
}

async fn delete<const SECTOR: usize>(spool: &mut SizedSpool<SECTOR>, ledger: &mut Ledger, id: MessageId) -> Result<(), Error> {
    ledger.deleting = Some(id);
    spool.delete(id).await?;
    ledger.deleting = None;
    ledger.deleted.push(id);
    Ok(())
}

async fn deliver<const SECTOR: usize>(
    spool: &mut SizedSpool<SECTOR>,
    ledger: &mut Ledger,
    id: MessageId,
    recipient: usize,
) -> Result<(), Error> {
    spool.mark_delivered(id, recipient).await?;
    ledger.delivered.push((id, recipient));
    Ok(())
}

async fn scenario<const SECTOR: usize>(flash: &SizedFlash<SECTOR>, ledger: &mut Ledger) -> Result<(), Error> {
    let length = scaled::<SECTOR>;
    let (mut spool, _) = try_mount(flash, 11)?;
    spool.maintain().await?;
    let a = store(&mut spool, ledger, 1, length(10_240)).await?;
    let b = store(&mut spool, ledger, 2, length(3_000)).await?;
    // W has 110 recipients: three envelope records.
    let w = store_to(&mut spool, ledger, 9, length(2_000), 110).await?;
    // C (128 recipients: four envelope records) is left open across the restart: it must
    // never appear.
    let owned = addresses(128);
    let envelope = envelope_of(&owned, length(2_000));
    let mut open = spool.begin_message(&envelope, length(4000) as u32).await?;
    spool.append(&mut open, &message_bytes(3, length(2_000))).await?;
    deliver(&mut spool, ledger, a, 0).await?;
    deliver(&mut spool, ledger, w, 105).await?;
    let d = store(&mut spool, ledger, 4, length(6_000)).await?;
    delete(&mut spool, ledger, b).await?;
    spool.set_next_retry(a, 1_000).await?;
    drop(open);
    drop(spool);
    // Restart.
    let (mut spool, _) = try_mount(flash, 12)?;
    spool.maintain().await?;
    let e = store(&mut spool, ledger, 5, length(12_000)).await?;
    deliver(&mut spool, ledger, a, 1).await?;
    delete(&mut spool, ledger, a).await?;
    spool.mark_failed(d, 0).await?;
    let _f = store(&mut spool, ledger, 6, length(1_500)).await?;
    delete(&mut spool, ledger, d).await?;
    deliver(&mut spool, ledger, e, 0).await?;
    deliver(&mut spool, ledger, w, 0).await?;
    deliver(&mut spool, ledger, w, 109).await?;
    let envelope = Envelope::new(b"g@example.net", &[b"a@example.org"]).unwrap();
    let mut open = spool.begin_message(&envelope, length(4000) as u32).await?;
    spool.append(&mut open, &message_bytes(7, length(4_000))).await?;
    let _h = store(&mut spool, ledger, 8, length(2_500)).await?;
    // E spans three sectors (and more erases at every size).
    delete(&mut spool, ledger, e).await?;
    Ok(())
}

fn check_recovery<const SECTOR: usize>(flash: &SizedFlash<SECTOR>, ledger: &Ledger, cut: u64, mode: CutMode) {
    let context = format!("{} KiB sectors, cut at operation {cut} ({mode:?})", SECTOR / 1024);
    let (mut spool, report) = mount(flash, 99);
    assert_eq!(report.records_corrupt, 0, "{context}: {report:?}");
    assert_eq!(report.messages_damaged, 0, "{context}: {report:?}");
    let present: Vec<MessageId> = spool.messages().map(|m| m.id).collect();
    block_on(async {
        for (&id, (data, recipients)) in &ledger.committed {
            let deleted = ledger.deleted.contains(&id);
            let maybe = ledger.deleting == Some(id);
            if deleted {
                assert!(!present.contains(&id), "{context}: deleted {id:?} came back");
            } else if !maybe {
                assert!(present.contains(&id), "{context}: acknowledged {id:?} lost");
            }
            if present.contains(&id) {
                check_message(&mut spool, id, data, *recipients, &context).await;
            }
        }
        for &id in &present {
            let known = ledger.committed.contains_key(&id) || ledger.committing.as_ref().is_some_and(|(c, _, _)| *c == id);
            assert!(known, "{context}: {id:?} was never committed");
            if let Some((committing, data, recipients)) = &ledger.committing {
                if *committing == id {
                    check_message(&mut spool, id, data, *recipients, &format!("{context}: in-flight commit")).await;
                }
            }
        }
        for &(id, recipient) in &ledger.delivered {
            if let Some(summary) = spool.message(id) {
                assert_eq!(summary.delivery.recipient(recipient), RecipientState::Delivered, "{context}: mark lost");
            }
        }
        // The spool keeps working: erase what is left, add a message, read it, delete all.
        spool.maintain().await.unwrap();
        let data = message_bytes(77, scaled::<SECTOR>(9_000));
        let id = enqueue(&mut spool, &data, 1, 1000).await.unwrap();
        assert_eq!(read_all(&mut spool, id).await.unwrap(), data, "{context}");
        let ids: Vec<_> = spool.messages().map(|m| m.id).collect();
        for id in ids {
            spool.delete(id).await.unwrap();
        }
    });
    let (spool, report) = mount(flash, 100);
    assert!(report.is_clean(), "{context}: after cleaning up {report:?}");
    assert_eq!(spool.messages().count(), 0, "{context}");
    assert_eq!(spool.space().sectors_in_use, 1, "{context}: space leaked {:?}", spool.space());
}

fn sweep<const SECTOR: usize>(mode: CutMode) {
    let flash = new_sized_flash::<SECTOR>();
    let mut ledger = Ledger::default();
    block_on(scenario(&flash, &mut ledger)).unwrap();
    let log = flash.operation_log();
    let total = flash.mutating_operations();
    let erases = flash.counters().sectors_erased;
    assert!(total > 60 && erases >= 4, "scenario too small: {total} operations, {erases} erases");
    let header_extent = 40;
    let cuts = cut_points(&log, SECTOR, header_extent, FULL_SWEEP, CHUNK_SAMPLES);
    for &cut in &cuts {
        let flash = new_sized_flash::<SECTOR>();
        flash.cut_power_at(cut, mode, cut * 7919 + 1);
        let mut ledger = Ledger::default();
        let outcome = block_on(scenario(&flash, &mut ledger));
        assert!(outcome.is_err(), "the cut at {cut} must stop the scenario");
        flash.restore_power();
        check_recovery(&flash, &ledger, cut, mode);
    }
    println!(
        "power-loss, {} KiB sectors, {mode:?}: scenario has {total} operations, {erases} of them erases; {} cut points covered",
        SECTOR / 1024,
        cuts.len()
    );
}

fn every_cut_point_clean<const SECTOR: usize>() {
    sweep::<SECTOR>(CutMode::Clean);
}

/// Torn writes and half erases.
fn every_cut_point_torn<const SECTOR: usize>() {
    sweep::<SECTOR>(CutMode::Torn);
}

for_each_sector_size!(every_cut_point_clean);
for_each_sector_size!(every_cut_point_torn);
