//! Property test: random sequences of enqueue / read / mark delivered / delete / restart
//! against a model (a map of id → data and delivered recipients).

mod common;

use common::*;
use homemx_spool::testing::block_on;
use homemx_spool::{MessageId, RecipientState};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Operation {
    Enqueue { seed: u32, length: usize, piece: usize, recipients: usize },
    Read { pick: usize },
    MarkDelivered { pick: usize, recipient: usize },
    Delete { pick: usize },
    Maintain,
    Restart,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        4 => (any::<u32>(), 0usize..6000, 1usize..2000, 1usize..4)
            .prop_map(|(seed, length, piece, recipients)| Operation::Enqueue { seed, length, piece, recipients }),
        2 => any::<usize>().prop_map(|pick| Operation::Read { pick }),
        2 => (any::<usize>(), 0usize..3).prop_map(|(pick, recipient)| Operation::MarkDelivered { pick, recipient }),
        2 => any::<usize>().prop_map(|pick| Operation::Delete { pick }),
        1 => Just(Operation::Maintain),
        1 => Just(Operation::Restart),
    ]
}

struct Model {
    messages: BTreeMap<MessageId, (Vec<u8>, usize, u32)>,
}

fn pick(model: &Model, pick: usize) -> Option<MessageId> {
    let ids: Vec<_> = model.messages.keys().copied().collect();
    (!ids.is_empty()).then(|| ids[pick % ids.len()])
}

fn check_listing(spool: &TestSpool, model: &Model) {
    let listed: Vec<_> = spool.messages().map(|m| (m.id, m.length as usize, m.delivery.delivered, m.damaged)).collect();
    let expected: Vec<_> = model.messages.iter().map(|(&id, (data, _, delivered))| (id, data.len(), *delivered, false)).collect();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    assert_eq!(listed_sorted, expected);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn queue_matches_model(operations in proptest::collection::vec(operation(), 1..40)) {
        let flash = new_flash();
        let (mut spool, _) = mount(&flash, 1);
        let mut model = Model { messages: BTreeMap::new() };
        let mut boot = 1;
        for operation in operations {
            match operation {
                Operation::Enqueue { seed, length, piece, recipients } => {
                    if spool.can_accept(length as u32) {
                        let data = message_bytes(seed, length);
                        let id = block_on(enqueue(&mut spool, &data, recipients, piece)).expect("admitted message must fit");
                        model.messages.insert(id, (data, recipients, 0));
                    }
                }
                Operation::Read { pick: choice } => {
                    if let Some(id) = pick(&model, choice) {
                        let read = block_on(read_all(&mut spool, id)).unwrap();
                        prop_assert_eq!(&read, &model.messages[&id].0);
                    }
                }
                Operation::MarkDelivered { pick: choice, recipient } => {
                    if let Some(id) = pick(&model, choice) {
                        let entry = model.messages.get_mut(&id).unwrap();
                        if recipient < entry.1 {
                            block_on(spool.mark_delivered(id, recipient)).unwrap();
                            entry.2 |= 1 << recipient;
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
                Operation::Maintain => {
                    block_on(spool.maintain()).unwrap();
                }
                Operation::Restart => {
                    drop(spool);
                    boot += 1;
                    let (mounted, report) = mount(&flash, boot);
                    prop_assert!(report.is_clean(), "{:?}", report);
                    spool = mounted;
                }
            }
            check_listing(&spool, &model);
        }
        // Everything left reads back after a final restart.
        drop(spool);
        let (mut spool, report) = mount(&flash, 1000);
        prop_assert!(report.is_clean(), "{:?}", report);
        check_listing(&spool, &model);
        for (&id, (data, _, _)) in &model.messages {
            prop_assert_eq!(&block_on(read_all(&mut spool, id)).unwrap(), data);
        }
    }
}
