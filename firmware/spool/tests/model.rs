//! Property test: random sequences of enqueue / read / mark delivered / delete / abort /
//! interrupted receipt / restart against a model (a map of id → data and delivered
//! recipients), once with a roomy table and once with a 4-slot table that runs full, so
//! deleted and abandoned messages compete with queued ones for slots across restarts.
//! Some messages have 100 to 128 recipients (an envelope of three or four records) and
//! every message carries a queued-at time, checked in the listing and the envelope.
//!
//! Both run on sector sizes of 4, 8, 16, 64 and 128 KiB, with message lengths in proportion
//! (up to 1.5 sectors), so each size fills, splits across sectors and reclaims alike; the
//! large sizes run fewer cases.

mod common;

use common::*;
use homemx_spool::testing::block_on;
use homemx_spool::testing::TestRandom;
use homemx_spool::{
    Envelope, MessageId, MessageWriter, RecipientState, RecoveryReport, Spool, SpoolError, CHUNK_CAPACITY,
    ENVELOPE_CAPACITY, MAX_RECIPIENTS,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Operation {
    Enqueue { seed: u32, length: usize, piece: usize, recipients: usize },
    Read { pick: usize },
    MarkDelivered { pick: usize, recipient: usize },
    Delete { pick: usize },
    /// Begin a message, append some, abort it.
    Abort { seed: u32, length: usize },
    /// Begin a message, append some, then restart without committing (a reset mid-receipt).
    Interrupt { seed: u32, length: usize },
    Maintain,
    Restart,
}

/// The operations on a flash of `sector`-byte sectors (lengths scale with the sector).
fn operation(sector: usize) -> impl Strategy<Value = Operation> {
    let scale = sector / 4096;
    prop_oneof![
        4 => (any::<u32>(), 0usize..6000 * scale, 1usize..2000 * scale, prop_oneof![3 => 1usize..4, 1 => 100usize..=MAX_RECIPIENTS])
            .prop_map(|(seed, length, piece, recipients)| Operation::Enqueue { seed, length, piece, recipients }),
        2 => any::<usize>().prop_map(|pick| Operation::Read { pick }),
        2 => (any::<usize>(), prop_oneof![0usize..3, 90usize..MAX_RECIPIENTS])
            .prop_map(|(pick, recipient)| Operation::MarkDelivered { pick, recipient }),
        2 => any::<usize>().prop_map(|pick| Operation::Delete { pick }),
        1 => (any::<u32>(), 0usize..3000 * scale).prop_map(|(seed, length)| Operation::Abort { seed, length }),
        1 => (any::<u32>(), 0usize..3000 * scale).prop_map(|(seed, length)| Operation::Interrupt { seed, length }),
        1 => Just(Operation::Maintain),
        1 => Just(Operation::Restart),
    ]
}

struct Model {
    /// Data, recipient count, delivered bitmap; the queued-at time is the data's length.
    messages: BTreeMap<MessageId, (Vec<u8>, usize, u128)>,
}

fn pick(model: &Model, pick: usize) -> Option<MessageId> {
    let ids: Vec<_> = model.messages.keys().copied().collect();
    (!ids.is_empty()).then(|| ids[pick % ids.len()])
}

/// The spool with an `M`-slot table on a flash of `SECTOR`-byte sectors.
type ModelSpool<const SECTOR: usize, const M: usize> = Spool<SizedFlash<SECTOR>, TestRandom, 64, M>;

fn mount_table<const SECTOR: usize, const M: usize>(flash: &SizedFlash<SECTOR>, seed: u64) -> (ModelSpool<SECTOR, M>, RecoveryReport) {
    let mut spool = ModelSpool::<SECTOR, M>::new(flash.clone(), sized_region(SECTOR), &KEY, TestRandom::new(seed)).unwrap();
    let report = block_on(spool.mount()).unwrap();
    (spool, report)
}

async fn enqueue_any<const SECTOR: usize, const M: usize>(
    spool: &mut ModelSpool<SECTOR, M>,
    data: &[u8],
    recipient_count: usize,
    piece: usize,
) -> Result<MessageId, Error> {
    let addresses = recipients(recipient_count);
    let list: Vec<&[u8]> = addresses.iter().map(|a| a.as_slice()).collect();
    let envelope = Envelope::new(b"sender@example.net", &list).unwrap().with_queued_at(queued_at(data.len()));
    let mut writer = spool.begin_message(&envelope, data.len() as u32).await?;
    for part in data.chunks(piece.max(1)) {
        spool.append(&mut writer, part).await?;
    }
    Ok(spool.commit(writer).await?.id)
}

/// The queued-at time the model gives a message of `length` bytes.
fn queued_at(length: usize) -> u64 {
    1_700_000_000 + length as u64
}

/// Reads a message's envelope; checks its recipients and queued-at time.
async fn check_envelope<const SECTOR: usize, const M: usize>(
    spool: &mut ModelSpool<SECTOR, M>,
    id: MessageId,
    data: &[u8],
    recipient_count: usize,
) {
    let mut buffer = [0u8; ENVELOPE_CAPACITY];
    let envelope = spool.read_envelope(id, &mut buffer).await.unwrap();
    let expected = recipients(recipient_count);
    assert_eq!(envelope.recipients().collect::<Vec<_>>(), expected.iter().map(|a| a.as_slice()).collect::<Vec<_>>());
    assert_eq!(envelope.queued_at(), queued_at(data.len()));
}

/// Begins a message (declaring 4000 bytes at 4 KiB sectors, in proportion at others) and
/// appends `length` bytes; `None` if refused.
async fn start_any<const SECTOR: usize, const M: usize>(
    spool: &mut ModelSpool<SECTOR, M>,
    seed: u32,
    length: usize,
) -> Option<MessageWriter> {
    let envelope = Envelope::new(b"sender@example.net", &[b"a@example.org"]).unwrap();
    let mut writer = match spool.begin_message(&envelope, scaled::<SECTOR>(4000) as u32).await {
        Ok(writer) => writer,
        Err(SpoolError::MessageTableFull | SpoolError::NoSpace) => return None,
        Err(error) => panic!("begin: {error:?}"),
    };
    spool.append(&mut writer, &message_bytes(seed, length)).await.unwrap();
    Some(writer)
}

async fn read_any<const SECTOR: usize, const M: usize>(spool: &mut ModelSpool<SECTOR, M>, id: MessageId) -> Result<Vec<u8>, Error> {
    let mut reader = spool.open_message(id).await?;
    let mut out = Vec::new();
    let mut chunk = [0u8; CHUNK_CAPACITY];
    loop {
        let length = spool.read_chunk(&mut reader, &mut chunk).await?;
        if length == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..length]);
    }
}

fn check_listing<const SECTOR: usize, const M: usize>(spool: &ModelSpool<SECTOR, M>, model: &Model) {
    let listed: Vec<_> = spool
        .messages()
        .map(|m| (m.id, m.length as usize, m.recipient_count, m.queued_at, m.delivery.delivered, m.damaged))
        .collect();
    let expected: Vec<_> = model
        .messages
        .iter()
        .map(|(&id, (data, count, delivered))| (id, data.len(), *count, queued_at(data.len()), *delivered, false))
        .collect();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    assert_eq!(listed_sorted, expected);
}

/// The model test body, for an `M`-slot table on a flash of `SECTOR`-byte sectors.
fn run_model<const SECTOR: usize, const M: usize>(operations: Vec<Operation>) -> Result<(), TestCaseError> {
    let flash = new_sized_flash::<SECTOR>();
    let (mut spool, _) = mount_table::<SECTOR, M>(&flash, 1);
    let mut model = Model { messages: BTreeMap::new() };
    let mut boot = 1;
    for operation in operations {
        match operation {
            Operation::Enqueue { seed, length, piece, recipients } => {
                if spool.can_accept(length as u32) {
                    let data = message_bytes(seed, length);
                    let id = block_on(enqueue_any(&mut spool, &data, recipients, piece)).expect("admitted message must fit");
                    model.messages.insert(id, (data, recipients, 0));
                }
            }
            Operation::Read { pick: choice } => {
                if let Some(id) = pick(&model, choice) {
                    let read = block_on(read_any(&mut spool, id)).unwrap();
                    prop_assert_eq!(&read, &model.messages[&id].0);
                    block_on(check_envelope(&mut spool, id, &model.messages[&id].0, model.messages[&id].1));
                }
            }
            Operation::MarkDelivered { pick: choice, recipient } => {
                if let Some(id) = pick(&model, choice) {
                    let entry = model.messages.get_mut(&id).unwrap();
                    if recipient < entry.1 {
                        block_on(spool.mark_delivered(id, recipient)).unwrap();
                        entry.2 |= 1u128 << recipient;
                        prop_assert_eq!(spool.message(id).unwrap().delivery.recipient(recipient), RecipientState::Delivered);
                    }
                }
            }
            Operation::Delete { pick: choice } => {
                if let Some(id) = pick(&model, choice) {
                    let work = block_on(spool.delete(id)).unwrap();
                    prop_assert!(work.program_operations <= 2);
                    model.messages.remove(&id);
                }
            }
            Operation::Abort { seed, length } => {
                if let Some(writer) = block_on(start_any(&mut spool, seed, length)) {
                    spool.abort(writer);
                }
            }
            Operation::Interrupt { seed, length } => {
                let writer = block_on(start_any(&mut spool, seed, length));
                drop(writer);
                drop(spool);
                boot += 1;
                let (mounted, report) = mount_table::<SECTOR, M>(&flash, boot);
                prop_assert_eq!(report.messages_over_capacity, 0, "{:?}", report);
                prop_assert_eq!(report.messages_damaged + report.records_corrupt, 0, "{:?}", report);
                spool = mounted;
            }
            Operation::Maintain => {
                block_on(spool.maintain()).unwrap();
            }
            Operation::Restart => {
                drop(spool);
                boot += 1;
                let (mounted, report) = mount_table::<SECTOR, M>(&flash, boot);
                prop_assert!(report.is_clean(), "{:?}", report);
                spool = mounted;
            }
        }
        check_listing(&spool, &model);
    }
    // Everything left reads back after a final restart.
    drop(spool);
    let (mut spool, report) = mount_table::<SECTOR, M>(&flash, 1000);
    prop_assert!(report.is_clean(), "{:?}", report);
    check_listing(&spool, &model);
    for (&id, (data, count, _)) in &model.messages {
        prop_assert_eq!(&block_on(read_any(&mut spool, id)).unwrap(), data);
        block_on(check_envelope(&mut spool, id, data, *count));
    }
    Ok(())
}

/// The two model tests for one sector size, with `$cases` cases each.
macro_rules! model_tests {
    ($($module:ident: $sector:expr, $cases:expr;)*) => {$(
        mod $module {
            use super::*;

            proptest! {
                #![proptest_config(ProptestConfig { cases: $cases, ..ProptestConfig::default() })]

                #[test]
                fn queue_matches_model(operations in proptest::collection::vec(operation($sector), 1..40)) {
                    run_model::<{ $sector }, 32>(operations)?;
                }

                /// A 4-slot table: it runs full, and deleted, aborted and interrupted messages
                /// take slots across restarts; no committed message may be lost at any mount.
                #[test]
                fn small_table_matches_model(operations in proptest::collection::vec(operation($sector), 1..60)) {
                    run_model::<{ $sector }, 4>(operations)?;
                }
            }
        }
    )*};
}

model_tests! {
    sectors_4_kib: 4096, 24;
    sectors_8_kib: 8192, 16;
    sectors_16_kib: 16384, 12;
    sectors_64_kib: 65536, 8;
    sectors_128_kib: 131072, 8;
}
