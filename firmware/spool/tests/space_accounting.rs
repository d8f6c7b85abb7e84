//! Property test of the free-space accounting: random interleavings of begin / write /
//! commit / abort / delete / restart with up to three messages being received at once (the
//! firmware runs several SMTP sessions), some declaring their size (SMTP `SIZE=`), most not.
//!
//! Checked throughout: a begin whose size `can_accept` admitted succeeds, and so do the writes
//! and the commit of a message that stays within its declared size; a message without a
//! declared size that fits the space `can_accept` reports is accepted in full (space is
//! reserved as its data arrives, and what refused or aborted messages wrote is reclaimed
//! before space is declared short); nothing is ever reported free beyond the initial space.
//! At the end, with every message deleted or aborted: the free space and what a dead head
//! holds back (see `Spool::free_bytes`) add up to the initial free space exactly (no byte
//! leaked), nothing is reserved, the largest message `can_accept` admits is accepted without
//! a declared size (the one a fresh spool took, unless a dead head holds some back), and a
//! reset finds the same space.
//!
//! It runs on sector sizes of 4, 8, 16, 64 and 128 KiB, with lengths in proportion to the
//! sector (the large sizes run fewer cases).

mod common;

use common::*;
use homemx_spool::testing::block_on;
use homemx_spool::{Envelope, MessageId, MessageWriter, SpoolError};
use proptest::prelude::*;

const WRITERS: usize = 3;

#[derive(Debug, Clone)]
enum Operation {
    /// Begin a message in writer slot `writer`, declaring `declared` bytes (or nothing).
    Begin { writer: usize, declared: Option<u32> },
    /// Append `length` bytes to the message of writer slot `writer`.
    Write { writer: usize, length: usize },
    Commit { writer: usize },
    Abort { writer: usize },
    Delete { pick: usize },
    /// A whole message of `share`/16 of the reported free space, without a declared size.
    Fits { share: u8 },
    /// Reset: open messages are lost, everything is rebuilt from flash.
    Restart,
}

/// The operations on a flash of `sector`-byte sectors (lengths scale with the sector).
fn operation(sector: usize) -> impl Strategy<Value = Operation> {
    let scale = sector / 4096;
    prop_oneof![
        3 => (0..WRITERS, prop_oneof![3 => Just(None), 1 => (0..20_000 * scale as u32).prop_map(Some)])
            .prop_map(|(writer, declared)| Operation::Begin { writer, declared }),
        5 => (0..WRITERS, 1usize..12_000 * scale).prop_map(|(writer, length)| Operation::Write { writer, length }),
        2 => (0..WRITERS).prop_map(|writer| Operation::Commit { writer }),
        2 => (0..WRITERS).prop_map(|writer| Operation::Abort { writer }),
        2 => any::<usize>().prop_map(|pick| Operation::Delete { pick }),
        1 => (1u8..=15).prop_map(|share| Operation::Fits { share }),
        1 => Just(Operation::Restart),
    ]
}

/// A message being received: its writer, the declared size and the bytes written so far.
struct Open {
    writer: MessageWriter,
    declared: Option<u32>,
    written: usize,
}

fn envelope() -> Envelope<'static> {
    Envelope::new(b"sender@example.net", &[b"rcpt@example.org"]).unwrap()
}

/// Stores a whole message without a declared size (as an SMTP client that sends no SIZE).
async fn store_undeclared<const SECTOR: usize>(spool: &mut SizedSpool<SECTOR>, length: usize) -> Result<MessageId, Error> {
    let mut writer = spool.begin_message(&envelope(), 0).await?;
    for piece in message_bytes(length as u32, length).chunks(700) {
        if let Err(error) = spool.append(&mut writer, piece).await {
            spool.abort(writer);
            return Err(error);
        }
    }
    Ok(spool.commit(writer).await?.id)
}

/// The largest message (in steps of 256 bytes) that `can_accept` admits now.
/// The largest message (in steps of 256 bytes at 4 KiB sectors, in proportion at others)
/// that `can_accept` admits now.
fn largest_accepted<const SECTOR: usize>(spool: &SizedSpool<SECTOR>) -> u32 {
    let step = scaled::<SECTOR>(256) as u32;
    let mut length = 0;
    while spool.can_accept(length + step) {
        length += step;
    }
    length
}

fn run<const SECTOR: usize>(operations: Vec<Operation>) -> Result<(), TestCaseError> {
    let flash = new_sized_flash::<SECTOR>();
    let (mut spool, _) = mount(&flash, 1);
    block_on(spool.maintain()).unwrap();
    let initial_free = spool.free_bytes();
    let initial_largest = largest_accepted(&spool);
    prop_assert!(initial_largest as usize > scaled::<SECTOR>(40_000), "{initial_largest}");
    let mut open: [Option<Open>; WRITERS] = [None, None, None];
    let mut queued: Vec<MessageId> = Vec::new();
    let mut boot = 1;
    for operation in operations {
        match operation {
            Operation::Begin { writer, declared } => {
                if open[writer].is_some() {
                    continue;
                }
                let admitted = spool.can_accept(declared.unwrap_or(0));
                match block_on(spool.begin_message(&envelope(), declared.unwrap_or(0))) {
                    Ok(started) => open[writer] = Some(Open { writer: started, declared, written: 0 }),
                    Err(SpoolError::NoSpace | SpoolError::MessageTableFull) => {
                        prop_assert!(!admitted, "begin of {declared:?} refused although can_accept said yes")
                    }
                    Err(error) => panic!("begin: {error:?}"),
                }
            }
            Operation::Write { writer, length } => {
                let Some(message) = open[writer].as_mut() else { continue };
                let within = message.declared.is_some_and(|declared| message.written + length <= declared as usize);
                match block_on(spool.append(&mut message.writer, &message_bytes(length as u32, length))) {
                    Ok(()) => message.written += length,
                    Err(SpoolError::NoSpace) => {
                        prop_assert!(!within, "a write within the declared size was refused");
                        let message = open[writer].take().unwrap();
                        spool.abort(message.writer);
                    }
                    Err(error) => panic!("append: {error:?}"),
                }
            }
            Operation::Commit { writer } => {
                let Some(message) = open[writer].take() else { continue };
                let within = message.declared.is_some_and(|declared| message.written <= declared as usize);
                match block_on(spool.commit(message.writer)) {
                    Ok(report) => queued.push(report.id),
                    Err(SpoolError::NoSpace) => prop_assert!(!within, "a commit within the declared size was refused"),
                    Err(error) => panic!("commit: {error:?}"),
                }
            }
            Operation::Abort { writer } => {
                if let Some(message) = open[writer].take() {
                    spool.abort(message.writer);
                }
            }
            Operation::Delete { pick } => {
                if !queued.is_empty() {
                    let id = queued.remove(pick % queued.len());
                    block_on(spool.delete(id)).unwrap();
                }
            }
            Operation::Fits { share } => {
                let length = (spool.free_bytes() * u64::from(share) / 16) as usize;
                if spool.can_accept(length as u32) {
                    let stored = block_on(store_undeclared(&mut spool, length));
                    prop_assert!(stored.is_ok(), "a {length}-byte message that fits was refused: {stored:?}, {:?}", spool.space());
                    queued.push(stored.unwrap());
                }
            }
            Operation::Restart => {
                open = [None, None, None];
                drop(spool);
                boot += 1;
                let (mounted, report) = mount(&flash, boot);
                prop_assert_eq!(report.records_corrupt + report.messages_damaged, 0, "{:?}", report);
                spool = mounted;
            }
        }
        prop_assert!(spool.free_bytes() <= initial_free, "{} free of {initial_free}", spool.free_bytes());
    }
    // Everything deleted or aborted: the accounting is back where it started.
    for message in open.iter_mut().filter_map(Option::take) {
        spool.abort(message.writer);
    }
    for id in queued {
        block_on(spool.delete(id)).unwrap();
    }
    let space = spool.space();
    prop_assert_eq!(space.reserved_bytes, 0);
    prop_assert_eq!(space.free_bytes + space.held_by_dead_head, initial_free, "space leaked: {:?}", space);
    // What a dead head holds back is at most a sector, and at most what else is free.
    prop_assert!(space.held_by_dead_head <= space.free_bytes.min(SECTOR as u64), "{:?}", space);
    let largest = largest_accepted(&spool);
    prop_assert!(largest <= initial_largest);
    if space.held_by_dead_head == 0 {
        prop_assert_eq!(largest, initial_largest);
    }
    let stored = block_on(store_undeclared(&mut spool, largest as usize));
    prop_assert!(stored.is_ok(), "the largest message was refused: {stored:?}, {:?}", spool.space());
    // After a reset: nothing is kept from before but the one message.
    block_on(spool.delete(stored.unwrap())).unwrap();
    let space = spool.space();
    prop_assert_eq!(space.free_bytes + space.held_by_dead_head, initial_free, "space leaked: {:?}", space);
    drop(spool);
    let (spool, _) = mount(&flash, 1000);
    prop_assert_eq!(spool.space(), space, "space leaked after a reset");
    Ok(())
}

/// The property for one sector size, with `$cases` cases.
macro_rules! accounting_tests {
    ($($module:ident: $sector:expr, $cases:expr;)*) => {$(
        mod $module {
            use super::*;

            proptest! {
                #![proptest_config(ProptestConfig { cases: $cases, ..ProptestConfig::default() })]

                #[test]
                fn accounting_never_leaks(operations in proptest::collection::vec(operation($sector), 1..60)) {
                    run::<{ $sector }>(operations)?;
                }
            }
        }
    )*};
}

accounting_tests! {
    sectors_4_kib: 4096, 64;
    sectors_8_kib: 8192, 32;
    sectors_16_kib: 16384, 24;
    sectors_64_kib: 65536, 16;
    sectors_128_kib: 131072, 16;
}

/// The attack run's sequence at spool level: a 4.5× too large message aborted part-way (the
/// session refused it with 552), then a message without a declared size must get in.
fn aborted_message_space_is_usable_again<const SECTOR: usize>() {
    let flash = new_sized_flash::<SECTOR>();
    let (mut spool, _) = mount(&flash, 1);
    block_on(async {
        spool.maintain().await.unwrap();
        let initial = spool.free_bytes();
        let mut writer = spool.begin_message(&envelope(), 0).await.unwrap();
        // Fill most of the region, then give up (552: over the size limit).
        for piece in message_bytes(1, scaled::<SECTOR>(50_000)).chunks(1000) {
            spool.append(&mut writer, piece).await.unwrap();
        }
        spool.abort(writer);
        // Free again, but for the part of the (now dead) head sector, which comes back when
        // that sector is erased.
        let space = spool.space();
        assert_eq!(space.free_bytes + space.held_by_dead_head, initial, "aborted data must count as free again: {space:?}");
        assert!(space.held_by_dead_head <= space.free_bytes.min(SECTOR as u64), "{space:?}");
        let erased_before = spool.statistics().sectors_erased;
        let length = scaled::<SECTOR>(40_000);
        let id = store_undeclared(&mut spool, length).await.expect("a message that fits must be accepted");
        assert!(spool.statistics().sectors_erased > erased_before, "the aborted data was reclaimed on demand");
        assert_eq!(read_all(&mut spool, id).await.unwrap(), message_bytes(length as u32, length));
    });
}

for_each_sector_size!(aborted_message_space_is_usable_again);

/// A head sector whose messages are all gone (a drained queue) keeps taking new messages, but
/// what was written into it comes back only when the sector is erased: the first record of a
/// new message pins it. So after a message of 1¼ or 1¾ sectors is deleted (its tail leaves a
/// quarter or three quarters of the head used), the largest message the free space admits,
/// declared (`SIZE=`) or not, must go through in full. (Counting the used part as free
/// whatever happens refused such messages half-way from 16 KiB sectors on.) Here the head's
/// used part is less than the rest of the free space: the head is kept, and its used part is
/// held back from the free space.
fn a_message_admitted_after_a_drain_is_accepted_in_full<const SECTOR: usize>() {
    for (tail, declared) in [(1, true), (1, false), (3, true), (3, false)] {
        let flash = new_sized_flash::<SECTOR>();
        let region = SECTOR as u32..7 * SECTOR as u32;
        let (mut spool, _) = mount_region(&flash, region, 1);
        let empty = spool.free_bytes();
        let context = format!("{} KiB sectors, head {tail}/4 used, declared {declared}", SECTOR / 1024);
        block_on(async {
            let id = enqueue(&mut spool, &message_bytes(1, SECTOR + tail * SECTOR / 4), 1, 999).await.unwrap();
            spool.delete(id).await.unwrap();
            let space = spool.space();
            assert_eq!(space.free_bytes + space.held_by_dead_head, empty, "{context}: {space:?}");
            assert!(space.held_by_dead_head > 0, "{context}: {space:?}");
            let length = if declared {
                let mut length = 0;
                while spool.worst_case_bytes(length + 64, envelope().encoded_length()) <= space.free_bytes {
                    length += 64;
                }
                length
            } else {
                largest_accepted(&spool)
            };
            assert!(length as usize > SECTOR, "{context}: only {length} bytes admitted");
            let data = message_bytes(2, length as usize);
            let mut writer = spool.begin_message(&envelope(), if declared { length } else { 0 }).await.unwrap();
            for piece in data.chunks(1000) {
                spool.append(&mut writer, piece).await.unwrap_or_else(|error| panic!("{context}: {error:?} at {length} bytes"));
            }
            let id = spool.commit(writer).await.unwrap_or_else(|error| panic!("{context}: commit: {error:?}"));
            assert_eq!(read_all(&mut spool, id.id).await.unwrap(), data, "{context}");
        });
    }
}

for_each_sector_size!(a_message_admitted_after_a_drain_is_accepted_in_full);


/// Where the records of sector `index` of `region` end (record headers are in clear: kind,
/// its complement, payload length; each record is padded to 4 bytes).
fn records_end<const SECTOR: usize>(flash: &SizedFlash<SECTOR>, region: &core::ops::Range<u32>, index: usize) -> usize {
    let image = flash.snapshot();
    let sector = &image[region.start as usize + index * SECTOR..][..SECTOR];
    let mut offset = 40;
    while offset + 12 <= SECTOR && sector[offset] != 0xFF && sector[offset + 1] == !sector[offset] {
        let length = u16::from_le_bytes([sector[offset + 2], sector[offset + 3]]) as usize;
        offset += (28 + length).div_ceil(4) * 4;
    }
    offset
}

/// The other case: the spool is nearly full and the dead head's used part is more than all
/// other free space: it is counted, and the next message closes the head first. Four
/// sectors: a kept message fills the first two to within a few bytes (so nothing more fits
/// in the second), a message of 0.8 sector takes the third and is deleted, the fourth is the
/// spare. The largest message the free space admits (about a sector), declared or not, goes
/// through in full, reclaiming the old head on the way.
fn a_nearly_full_spool_closes_a_dead_head_and_counts_it<const SECTOR: usize>() {
    let region = SECTOR as u32..5 * SECTOR as u32;
    // The kept message's length: searched until its commit record ends within 40 bytes of
    // the second sector's end (a new envelope record, 76 bytes, then no longer fits there).
    let (mut fits, mut overflows) = (2 * SECTOR - 3000 - SECTOR / 16, None);
    let mut candidate = fits;
    let kept_length = loop {
        let flash = new_sized_flash::<SECTOR>();
        let (mut spool, _) = mount_region(&flash, region.clone(), 1);
        block_on(enqueue(&mut spool, &message_bytes(1, candidate), 1, 999)).unwrap();
        let left = SECTOR - records_end(&flash, &region, 1);
        if spool.space().sectors_in_use > 2 {
            overflows = Some(candidate);
        } else if left <= 40 {
            break candidate;
        } else {
            fits = candidate;
        }
        candidate = match overflows {
            Some(overflows) => (fits + overflows) / 2,
            None => fits + (left - 20).min(900),
        };
        assert!(Some(candidate) != overflows && candidate != fits, "no length between {fits} and {overflows:?} fills two sectors");
    };
    for declared in [true, false] {
        let flash = new_sized_flash::<SECTOR>();
        let (mut spool, _) = mount_region(&flash, region.clone(), 1);
        let context = format!("{} KiB sectors, declared {declared}", SECTOR / 1024);
        block_on(async {
            let kept = message_bytes(1, kept_length);
            let kept_id = enqueue(&mut spool, &kept, 1, 999).await.unwrap();
            let id = enqueue(&mut spool, &message_bytes(2, SECTOR * 8 / 10), 1, 999).await.unwrap();
            assert_eq!(spool.space().sectors_in_use, 3, "{context}: {:?}", spool.space());
            spool.delete(id).await.unwrap();
            let space = spool.space();
            assert_eq!(space.held_by_dead_head, 0, "{context}: {space:?}");
            assert!(space.free_bytes > SECTOR as u64 * 8 / 10, "{context}: {space:?}");
            // The largest message that fits the free space with this envelope.
            let mut length = 0;
            while spool.worst_case_bytes(length + 64, envelope().encoded_length()) <= space.free_bytes {
                length += 64;
            }
            assert!(length as usize > SECTOR / 2, "{context}: only {length} bytes admitted");
            let data = message_bytes(3, length as usize);
            let erased = spool.statistics().sectors_erased;
            let mut writer = spool.begin_message(&envelope(), if declared { length } else { 0 }).await.unwrap();
            for piece in data.chunks(1000) {
                spool.append(&mut writer, piece).await.unwrap_or_else(|error| panic!("{context}: {error:?} at {length} bytes"));
            }
            let id = spool.commit(writer).await.unwrap_or_else(|error| panic!("{context}: commit: {error:?}")).id;
            assert!(spool.statistics().sectors_erased > erased, "{context}: the old head was reclaimed");
            assert_eq!(read_all(&mut spool, id).await.unwrap(), data, "{context}");
            assert_eq!(read_all(&mut spool, kept_id).await.unwrap(), kept, "{context}");
        });
    }
}

for_each_sector_size!(a_nearly_full_spool_closes_a_dead_head_and_counts_it);
