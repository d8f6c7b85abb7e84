//! Property test: random sequences of enqueue / read / mark delivered / delete / abort /
//! interrupted receipt / restart against a model (a map of id → data and delivered
//! recipients), once with a roomy table and once with a 4-slot table that runs full, so
//! deleted and abandoned messages compete with queued ones for slots across restarts.
//! Some messages have 100 to 128 recipients (an envelope of three or four records) and
//! every message carries a queued-at time, checked in the listing and the envelope.

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

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        4 => (any::<u32>(), 0usize..6000, 1usize..2000, prop_oneof![3 => 1usize..4, 1 => 100usize..=MAX_RECIPIENTS])
            .prop_map(|(seed, length, piece, recipients)| Operation::Enqueue { seed, length, piece, recipients }),
        2 => any::<usize>().prop_map(|pick| Operation::Read { pick }),
        2 => (any::<usize>(), prop_oneof![0usize..3, 90usize..MAX_RECIPIENTS])
            .prop_map(|(pick, recipient)| Operation::MarkDelivered { pick, recipient }),
        2 => any::<usize>().prop_map(|pick| Operation::Delete { pick }),
        1 => (any::<u32>(), 0usize..3000).prop_map(|(seed, length)| Operation::Abort { seed, length }),
        1 => (any::<u32>(), 0usize..3000).prop_map(|(seed, length)| Operation::Interrupt { seed, length }),
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

type SmallTableSpool = Spool<Flash, TestRandom, 64, 4>;

fn mount_small(flash: &Flash, seed: u64) -> (SmallTableSpool, RecoveryReport) {
    let mut spool = SmallTableSpool::new(flash.clone(), REGION, &KEY, TestRandom::new(seed)).unwrap();
    let report = block_on(spool.mount()).unwrap();
    (spool, report)
}

async fn enqueue_any<const M: usize>(
    spool: &mut Spool<Flash, TestRandom, 64, M>,
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
async fn check_envelope<const M: usize>(spool: &mut Spool<Flash, TestRandom, 64, M>, id: MessageId, data: &[u8], recipient_count: usize) {
    let mut buffer = [0u8; ENVELOPE_CAPACITY];
    let envelope = spool.read_envelope(id, &mut buffer).await.unwrap();
    let expected = recipients(recipient_count);
    assert_eq!(envelope.recipients(), expected.iter().map(|a| a.as_slice()).collect::<Vec<_>>().as_slice());
    assert_eq!(envelope.queued_at(), queued_at(data.len()));
}

/// Begins a message and appends `length` bytes; `None` if refused.
async fn start_any<const M: usize>(spool: &mut Spool<Flash, TestRandom, 64, M>, seed: u32, length: usize) -> Option<MessageWriter> {
    let envelope = Envelope::new(b"sender@example.net", &[b"a@example.org"]).unwrap();
    let mut writer = match spool.begin_message(&envelope, 4000).await {
        Ok(writer) => writer,
        Err(SpoolError::MessageTableFull | SpoolError::NoSpace) => return None,
        Err(error) => panic!("begin: {error:?}"),
    };
    spool.append(&mut writer, &message_bytes(seed, length)).await.unwrap();
    Some(writer)
}

async fn read_any<const M: usize>(spool: &mut Spool<Flash, TestRandom, 64, M>, id: MessageId) -> Result<Vec<u8>, Error> {
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

fn check_listing<const M: usize>(spool: &Spool<Flash, TestRandom, 64, M>, model: &Model) {
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

/// The model test body, for a spool type mounted by `$mount`.
macro_rules! model_test {
    ($mount:ident, $operations:expr) => {{
        let operations: Vec<Operation> = $operations;
        let flash = new_flash();
        let (mut spool, _) = $mount(&flash, 1);
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
                    let (mounted, report) = $mount(&flash, boot);
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
                    let (mounted, report) = $mount(&flash, boot);
                    prop_assert!(report.is_clean(), "{:?}", report);
                    spool = mounted;
                }
            }
            check_listing(&spool, &model);
        }
        // Everything left reads back after a final restart.
        drop(spool);
        let (mut spool, report) = $mount(&flash, 1000);
        prop_assert!(report.is_clean(), "{:?}", report);
        check_listing(&spool, &model);
        for (&id, (data, count, _)) in &model.messages {
            prop_assert_eq!(&block_on(read_any(&mut spool, id)).unwrap(), data);
            block_on(check_envelope(&mut spool, id, data, *count));
        }
        Ok(())
    }};
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn queue_matches_model(operations in proptest::collection::vec(operation(), 1..40)) {
        let result: Result<(), TestCaseError> = (|| model_test!(mount, operations))();
        result?;
    }

    /// A 4-slot table: it runs full, and deleted, aborted and interrupted messages take
    /// slots across restarts; no committed message may be lost at any mount.
    #[test]
    fn small_table_matches_model(operations in proptest::collection::vec(operation(), 1..60)) {
        let result: Result<(), TestCaseError> = (|| model_test!(mount_small, operations))();
        result?;
    }
}
