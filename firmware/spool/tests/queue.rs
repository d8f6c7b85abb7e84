//! Unit-level behaviour of the message queue: round trips, envelopes, delivery state,
//! deletion and reclaiming, free-space accounting, geometries. The tests of round trips,
//! reclaiming and filling run on sector sizes of 4, 8, 16, 64 and 128 KiB, with message
//! lengths in proportion to the sector.

mod common;

use common::*;
use homemx_spool::testing::{block_on, SimulatedFlash, TestRandom};
use homemx_spool::{
    DeliveryState, Envelope, MessageId, RecipientState, Spool, SpoolError, CHUNK_CAPACITY, ENVELOPE_CAPACITY,
    MAX_RECIPIENTS,
};

fn round_trip_small_and_large_messages<const SECTOR: usize>() {
    let flash = new_sized_flash::<SECTOR>();
    let (mut spool, report) = mount(&flash, 1);
    assert!(report.is_clean());
    assert_eq!(report.sectors_erased, 16);
    let length = scaled::<SECTOR>;
    // Pieces of up to a sector; the last two messages span three and five sectors.
    let messages =
        [(1, 0, 1), (2, 1, 1), (3, 1023, 7), (4, 1024, 1024), (5, 1025, 100), (6, length(10_000), 333), (7, length(20_000), SECTOR)];
    block_on(async {
        for (seed, length, piece) in messages {
            let data = message_bytes(seed, length);
            let id = enqueue(&mut spool, &data, 2, piece).await.unwrap();
            assert_eq!(read_all(&mut spool, id).await.unwrap(), data, "length {length}");
        }
    });
    // And after a reboot.
    let (mut spool, report) = mount(&flash, 2);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.messages_found, 7);
    block_on(async {
        let ids: Vec<_> = spool.messages().map(|m| m.id).collect();
        for (id, (seed, length, _)) in ids.into_iter().zip(messages) {
            assert_eq!(read_all(&mut spool, id).await.unwrap(), message_bytes(seed, length));
        }
    });
}

for_each_sector_size!(round_trip_small_and_large_messages);

#[test]
fn envelope_is_stored_and_read_back() {
    let flash = new_flash();
    let (mut spool, _) = mount(&flash, 1);
    block_on(async {
        let id = enqueue(&mut spool, b"Subject: hi\r\n\r\nhello\r\n", 3, 5).await.unwrap();
        let mut buffer = [0u8; ENVELOPE_CAPACITY];
        let envelope = spool.read_envelope(id, &mut buffer).await.unwrap();
        assert_eq!(envelope.reverse_path(), b"sender@example.net");
        assert_eq!(envelope.recipients().len(), 3);
        assert_eq!(envelope.recipient(2), Some(&b"user2@example.org"[..]));
    });
    assert!(Envelope::new(b"a", &[]).is_none());
    let long = vec![b'x'; 2100];
    assert!(Envelope::new(&long, &[&long[..]]).is_none(), "over the envelope capacity");
    let many: Vec<&[u8]> = (0..=MAX_RECIPIENTS).map(|_| &b"a@b"[..]).collect();
    assert!(Envelope::new(b"", &many[..MAX_RECIPIENTS]).is_some());
    assert!(Envelope::new(b"", &many).is_none(), "more than MAX_RECIPIENTS");
}

/// RFC 5321 4.5.3.1.8: at least 100 recipients. 128 recipients with long addresses take an
/// envelope of four records; it reads back, keeps its queued-at time and per-recipient
/// state for every recipient across reboots.
#[test]
fn hundred_and_more_recipients_with_a_multi_record_envelope() {
    const { assert!(MAX_RECIPIENTS >= 100) };
    let flash = new_flash();
    let (mut spool, _) = mount(&flash, 1);
    // 9 + (2 + 18) + 128 × (2 + 26) = 3613 bytes: four envelope records.
    let owned: Vec<Vec<u8>> = (0..MAX_RECIPIENTS).map(|index| format!("rcpt-{index:03}@example-long.org").into_bytes()).collect();
    let list: Vec<&[u8]> = owned.iter().map(|a| a.as_slice()).collect();
    let envelope = Envelope::new(b"sender@example.net", &list).unwrap().with_queued_at(1_750_000_123);
    assert_eq!(envelope.queued_at(), 1_750_000_123);
    assert!(envelope.encoded_length() > 3 * 1024 && envelope.encoded_length() <= ENVELOPE_CAPACITY);
    assert_eq!(Envelope::new(b"s@x", &[b"r@y"]).unwrap().queued_at(), 0, "unknown by default");
    let data = message_bytes(5, 5000);
    let (id, small) = block_on(async {
        let mut writer = spool.begin_message(&envelope, 5000).await.unwrap();
        spool.append(&mut writer, &data).await.unwrap();
        let id = spool.commit(writer).await.unwrap().id;
        // A one-record envelope next to it keeps working too.
        let small = enqueue(&mut spool, b"short", 1, 5).await.unwrap();
        for recipient in (0..MAX_RECIPIENTS).filter(|r| r % 2 == 0) {
            spool.mark_delivered(id, recipient).await.unwrap();
        }
        spool.mark_failed(id, 127).await.unwrap();
        spool.mark_failed(id, 99).await.unwrap();
        assert_eq!(spool.mark_delivered(id, MAX_RECIPIENTS).await, Err(SpoolError::TooManyRecipients));
        (id, small)
    });
    let (mut spool, report) = mount(&flash, 2);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.messages_found, 2);
    let summary = spool.message(id).unwrap();
    assert_eq!(summary.recipient_count, MAX_RECIPIENTS);
    assert_eq!(summary.queued_at, 1_750_000_123);
    assert_eq!(spool.message(small).unwrap().queued_at, 0);
    for recipient in 0..MAX_RECIPIENTS {
        let expected = match recipient {
            99 | 127 => RecipientState::Failed,
            even if even % 2 == 0 => RecipientState::Delivered,
            _ => RecipientState::Pending,
        };
        assert_eq!(summary.delivery.recipient(recipient), expected, "recipient {recipient}");
    }
    assert!(!summary.delivery.is_finished(MAX_RECIPIENTS));
    block_on(async {
        let mut buffer = [0u8; ENVELOPE_CAPACITY];
        let read = spool.read_envelope(id, &mut buffer).await.unwrap();
        assert_eq!(read.recipients().collect::<Vec<_>>(), list);
        assert_eq!(read.reverse_path(), b"sender@example.net");
        assert_eq!(read.queued_at(), 1_750_000_123);
        assert_eq!(read_all(&mut spool, id).await.unwrap(), data);
        for recipient in (0..MAX_RECIPIENTS).filter(|r| r % 2 == 1) {
            spool.mark_delivered(id, recipient).await.unwrap();
        }
        assert!(spool.message(id).unwrap().delivery.is_finished(MAX_RECIPIENTS));
        let mut buffer = [0u8; ENVELOPE_CAPACITY];
        assert_eq!(spool.read_envelope(small, &mut buffer).await.unwrap().recipients().collect::<Vec<_>>(), [b"user0@example.org"]);
        spool.delete(id).await.unwrap();
        spool.delete(small).await.unwrap();
    });
    let (spool, report) = mount(&flash, 3);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(spool.messages().count(), 0);
}

/// A message whose envelope part 1..3 is missing or not authentic is damaged, never
/// delivered as good; one whose part 0 is gone does not exist.
#[test]
fn a_missing_envelope_part_damages_the_message() {
    for damaged_part in 0..4u32 {
        let flash = new_flash();
        let (mut spool, _) = mount(&flash, 1);
        let owned: Vec<Vec<u8>> = (0..MAX_RECIPIENTS).map(|index| format!("rcpt-{index:03}@example-long.org").into_bytes()).collect();
        let list: Vec<&[u8]> = owned.iter().map(|a| a.as_slice()).collect();
        let envelope = Envelope::new(b"sender@example.net", &list).unwrap();
        let id = block_on(async {
            // Long enough that the commit record lies in a later sector than every part
            // (a spoilt record costs the rest of its sector).
            let mut writer = spool.begin_message(&envelope, 9000).await.unwrap();
            spool.append(&mut writer, &[b'x'; 9000]).await.unwrap();
            spool.commit(writer).await.unwrap().id
        });
        // Find the envelope record of that part (records are in clear headers) and spoil a
        // byte of its ciphertext.
        let image = flash.snapshot();
        let mut found = None;
        for sector in (REGION.start as usize..REGION.end as usize).step_by(4096) {
            let mut offset = sector + 40;
            while offset + 12 <= sector + 4096 && image[offset] != 0xFF {
                let length = u16::from_le_bytes([image[offset + 2], image[offset + 3]]) as usize;
                let index = u32::from_le_bytes(image[offset + 8..offset + 12].try_into().unwrap());
                if image[offset] == 1 && index == damaged_part {
                    found = Some(offset);
                }
                offset += (28 + length).div_ceil(4) * 4;
            }
        }
        let offset = found.expect("envelope part on flash");
        flash.flip_bit(offset + 20, 3);
        let (mut spool, report) = mount(&flash, 2);
        assert!(!report.is_clean(), "part {damaged_part}: {report:?}");
        if damaged_part == 0 {
            assert_eq!(spool.messages().count(), 0, "without part 0 there is no message");
            continue;
        }
        assert_eq!(report.messages_damaged, 1, "part {damaged_part}: {report:?}");
        assert!(spool.message(id).unwrap().damaged);
        block_on(async {
            let mut buffer = [0u8; ENVELOPE_CAPACITY];
            assert_eq!(spool.read_envelope(id, &mut buffer).await.err(), Some(SpoolError::Corrupt));
            assert_eq!(spool.open_message(id).await.err(), Some(SpoolError::Corrupt));
            spool.delete(id).await.unwrap();
        });
    }
}

/// A version-1 spool (or any sector header of another version) is not read: mount counts
/// its sectors unreadable, `maintain` erases them, and the region works as a new spool.
#[test]
fn sectors_of_format_version_1_are_treated_as_unreadable() {
    let flash = new_flash();
    let (mut spool, _) = mount(&flash, 1);
    block_on(async {
        for seed in 0..4 {
            enqueue(&mut spool, &message_bytes(seed, 5000), 2, 700).await.unwrap();
        }
    });
    let in_use = spool.space().sectors_in_use;
    assert!(in_use >= 5);
    // Turn every sector header into a version-1 header (byte 4 of the sector).
    let image = flash.snapshot();
    let mut changed = 0;
    for sector in (REGION.start as usize..REGION.end as usize).step_by(4096) {
        if &image[sector..sector + 4] == b"HMXQ" {
            assert_eq!(image[sector + 4], 2, "this build writes version 2");
            flash.overwrite(sector + 4, &[1]);
            changed += 1;
        }
    }
    assert_eq!(changed, in_use);
    let (mut spool, report) = mount(&flash, 2);
    assert_eq!(report.messages_found, 0);
    assert_eq!(report.sectors_unreadable as usize, in_use, "{report:?}");
    assert!(!report.is_clean());
    block_on(async {
        assert_eq!(spool.maintain().await.unwrap() as usize, in_use);
        let id = enqueue(&mut spool, &message_bytes(9, 3000), 1, 300).await.unwrap();
        assert_eq!(read_all(&mut spool, id).await.unwrap(), message_bytes(9, 3000));
    });
    let (_, report) = mount(&flash, 3);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.messages_found, 1);
}

#[test]
fn concurrent_messages_interleave_and_abort_leaves_nothing() {
    let flash = new_flash();
    let (mut spool, _) = mount(&flash, 1);
    block_on(async {
        let envelope = Envelope::new(b"s@x", &[b"r@y"]).unwrap();
        let a = message_bytes(1, 9000);
        let b = message_bytes(2, 7000);
        let c = message_bytes(3, 5000);
        let mut writer_a = spool.begin_message(&envelope, 9000).await.unwrap();
        let mut writer_b = spool.begin_message(&envelope, 7000).await.unwrap();
        let mut writer_c = spool.begin_message(&envelope, 5000).await.unwrap();
        for index in 0..10 {
            let piece = |data: &Vec<u8>| data[(index * data.len() / 10)..((index + 1) * data.len() / 10)].to_vec();
            spool.append(&mut writer_a, &piece(&a)).await.unwrap();
            spool.append(&mut writer_b, &piece(&b)).await.unwrap();
            spool.append(&mut writer_c, &piece(&c)).await.unwrap();
        }
        let id_a = spool.commit(writer_a).await.unwrap().id;
        spool.abort(writer_b);
        let id_c = spool.commit(writer_c).await.unwrap().id;
        assert_eq!(read_all(&mut spool, id_a).await.unwrap(), a);
        assert_eq!(read_all(&mut spool, id_c).await.unwrap(), c);
        assert_eq!(spool.messages().count(), 2);
    });
    let (mut spool, report) = mount(&flash, 2);
    assert_eq!(report.messages_found, 2);
    assert_eq!(report.messages_incomplete_dropped, 1, "the aborted message is dropped");
    block_on(async {
        let ids: Vec<_> = spool.messages().map(|m| m.id).collect();
        assert_eq!(read_all(&mut spool, ids[0]).await.unwrap(), message_bytes(1, 9000));
        assert_eq!(read_all(&mut spool, ids[1]).await.unwrap(), message_bytes(3, 5000));
    });
}

#[test]
fn delivery_state_survives_reboot_and_newest_wins() {
    let flash = new_flash();
    let (mut spool, _) = mount(&flash, 1);
    let id = block_on(async {
        let id = enqueue(&mut spool, &message_bytes(1, 3000), 4, 500).await.unwrap();
        spool.mark_delivered(id, 0).await.unwrap();
        spool.mark_failed(id, 2).await.unwrap();
        spool.set_next_retry(id, 1_700_000_600).await.unwrap();
        spool.set_next_retry(id, 1_700_001_200).await.unwrap();
        assert_eq!(spool.mark_delivered(id, 4).await, Err(SpoolError::TooManyRecipients));
        assert_eq!(spool.mark_delivered(MessageId(999), 0).await, Err(SpoolError::UnknownMessage));
        id
    });
    let (spool, report) = mount(&flash, 2);
    assert!(report.is_clean());
    let summary = spool.message(id).unwrap();
    assert_eq!(summary.recipient_count, 4);
    let state = summary.delivery;
    assert_eq!(state.recipient(0), RecipientState::Delivered);
    assert_eq!(state.recipient(1), RecipientState::Pending);
    assert_eq!(state.recipient(2), RecipientState::Failed);
    assert_eq!(state.next_retry, 1_700_001_200);
    assert_eq!(state.attempts, 2);
    assert!(!state.is_finished(4));
    assert!(DeliveryState { delivered: 0b1011, failed: 0b0100, ..Default::default() }.is_finished(4));
}

fn delete_reclaims_space_and_erases_nothing_before_commit<const SECTOR: usize>() {
    let flash = new_sized_flash::<SECTOR>();
    let (mut spool, _) = mount(&flash, 1);
    let empty = spool.free_bytes();
    let erased_before = flash.counters().sectors_erased;
    block_on(async {
        let mut ids = Vec::new();
        for round in 0..40u32 {
            let id = enqueue(&mut spool, &message_bytes(round, scaled::<SECTOR>(5000)), 1, 1000).await.unwrap();
            ids.push(id);
            if ids.len() > 3 {
                let old = ids.remove(0);
                spool.delete(old).await.unwrap();
            }
        }
        for id in ids.drain(..) {
            spool.delete(id).await.unwrap();
        }
        assert_eq!(spool.messages().count(), 0);
    });
    // 40 messages of 1.2 sectors went through a 16-sector region: it wrapped around three
    // times. Only the head sector stays in use; the rest is erased again.
    assert!(flash.counters().sectors_erased - erased_before >= 40, "{:?}", flash.counters());
    let space = spool.space();
    assert_eq!(space.sectors_in_use, 1, "{space:?}");
    assert!(spool.free_bytes() + SECTOR as u64 >= empty, "{} vs {}", spool.free_bytes(), empty);
    let (spool, report) = mount(&flash, 3);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(spool.messages().count(), 0);
}

for_each_sector_size!(delete_reclaims_space_and_erases_nothing_before_commit);

fn commit_path_never_erases<const SECTOR: usize>() {
    let flash = new_sized_flash::<SECTOR>();
    let (mut spool, _) = mount(&flash, 1);
    let length = scaled::<SECTOR>(10_240);
    block_on(async {
        for round in 0..60u32 {
            let envelope = Envelope::new(b"s@x", &[b"r@y"]).unwrap();
            let data = message_bytes(round, length);
            let mut writer = spool.begin_message(&envelope, length as u32).await.unwrap();
            for part in data.chunks(512) {
                spool.append(&mut writer, part).await.unwrap();
            }
            let report = spool.commit(writer).await.unwrap();
            assert_eq!(report.work.sectors_erased, 0, "erase before 250");
            assert!(report.work.bytes_programmed as f64 <= 1.1 * length as f64, "{report:?}");
            spool.delete(report.id).await.unwrap();
        }
    });
}

for_each_sector_size!(commit_path_never_erases);

/// Fills the spool to what `can_accept` allows (messages of 1.5 sectors), then checks the
/// refusals, delivery bookkeeping and deletion on the full spool, and that deleting makes
/// room again.
fn free_space_is_refused_before_the_spool_is_full<const SECTOR: usize>() {
    let flash = new_sized_flash::<SECTOR>();
    let (mut spool, _) = mount(&flash, 1);
    let length = scaled::<SECTOR>(6000);
    block_on(async {
        let mut accepted = 0;
        loop {
            if !spool.can_accept(length as u32) {
                break;
            }
            // Whatever was admitted must always go through completely.
            enqueue(&mut spool, &message_bytes(accepted, length), 1, 700).await.unwrap();
            accepted += 1;
        }
        assert!(accepted >= 8, "only {accepted} accepted");
        // `can_accept` counts on the largest envelope: one that large is refused now.
        let long = vec![b'x'; ENVELOPE_CAPACITY - 16];
        let largest = Envelope::new(&long, &[b"r@y"]).unwrap();
        assert_eq!(largest.encoded_length(), ENVELOPE_CAPACITY);
        assert_eq!(spool.begin_message(&largest, length as u32).await.err(), Some(SpoolError::NoSpace));
        let envelope = Envelope::new(b"s@x", &[b"r@y"]).unwrap();
        // Delivery bookkeeping and deletion still work on a full spool.
        let ids: Vec<_> = spool.messages().map(|m| m.id).collect();
        for &id in &ids {
            spool.mark_delivered(id, 0).await.unwrap();
        }
        spool.delete(ids[0]).await.unwrap();
        spool.delete(ids[1]).await.unwrap();
        assert!(spool.can_accept(length as u32));
        // A message appended beyond its reservation is refused once space runs out.
        let mut writer = spool.begin_message(&envelope, 10).await.unwrap();
        let mut refused = false;
        let piece = vec![b'x'; scaled::<SECTOR>(1000)];
        for _ in 0..100 {
            if spool.append(&mut writer, &piece).await.is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
        spool.abort(writer);
    });
    let (mut spool, report) = mount(&flash, 2);
    assert!(report.records_corrupt == 0, "{report:?}");
    block_on(async {
        let ids: Vec<_> = spool.messages().map(|m| m.id).collect();
        for id in ids {
            read_all(&mut spool, id).await.unwrap();
        }
    });
}

for_each_sector_size!(free_space_is_refused_before_the_spool_is_full);

/// The smallest region the spool takes (three sectors, one of them the spare, e.g. a board
/// with three 128 KiB sectors for mail; four of 4 KiB, as three could not hold the largest
/// envelope's records): one sector fewer is refused; a message larger than a sector fits
/// when it is empty; filled with small messages until a begin is refused, every recipient can
/// be marked delivered, failed and retried on the full spool, a reset finds every message, and
/// deleting them all gives back exactly the space there was (free, or held back by the dead
/// head sector until it is erased), twice over.
fn the_smallest_spool_fills_reclaims_and_recovers<const SECTOR: usize>() {
    let flash = new_sized_flash::<SECTOR>();
    let sectors = if SECTOR == 4096 { 4 } else { 3 };
    let region = SECTOR as u32..(1 + sectors) * SECTOR as u32;
    let smaller = SECTOR as u32..sectors * SECTOR as u32;
    let refused = SizedSpool::<SECTOR>::new(flash.clone(), smaller, &KEY, TestRandom::new(1)).err();
    assert_eq!(refused, Some(SpoolError::InvalidRegion), "{} sectors of {SECTOR} bytes", sectors - 1);
    let (mut spool, report) = mount_region(&flash, region.clone(), 1);
    assert_eq!(report.sectors_erased, sectors);
    let empty = spool.free_bytes();
    assert!(spool.can_accept(CHUNK_CAPACITY as u32), "{empty} free");
    let large = message_bytes(1, SECTOR * 5 / 4);
    block_on(async {
        let id = enqueue(&mut spool, &large, 1, 999).await.unwrap();
        assert_eq!(read_all(&mut spool, id).await.unwrap(), large);
        spool.delete(id).await.unwrap();
        let space = spool.space();
        assert_eq!(space.free_bytes + space.held_by_dead_head, empty, "{space:?}");
    });
    let length = SECTOR / 5;
    for round in 0..2u32 {
        let mut stored = Vec::new();
        block_on(async {
            for _ in 0..100 {
                let data = message_bytes(round * 100 + stored.len() as u32, length);
                match enqueue(&mut spool, &data, 3, 1000).await {
                    Ok(id) => stored.push((id, data)),
                    Err(SpoolError::NoSpace) => break,
                    Err(error) => panic!("enqueue: {error:?}"),
                }
            }
            assert!(stored.len() >= 4, "round {round}: only {} messages of {length} bytes: {:?}", stored.len(), spool.space());
            assert!(!spool.can_accept(length as u32));
            for (id, _) in &stored {
                spool.set_next_retry(*id, 300).await.unwrap();
                spool.mark_delivered(*id, 0).await.unwrap();
                spool.mark_failed(*id, 1).await.unwrap();
                spool.set_next_retry(*id, 600).await.unwrap();
            }
        });
        let (mut mounted, report) = mount_region(&flash, region.clone(), 10 + u64::from(round));
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.messages_found as usize, stored.len());
        block_on(async {
            for (id, data) in &stored {
                assert_eq!(&read_all(&mut mounted, *id).await.unwrap(), data);
                let delivery = mounted.message(*id).unwrap().delivery;
                assert_eq!((delivery.recipient(0), delivery.recipient(1)), (RecipientState::Delivered, RecipientState::Failed));
                assert_eq!((delivery.next_retry, delivery.attempts), (600, 2));
                mounted.mark_delivered(*id, 2).await.unwrap();
                mounted.delete(*id).await.unwrap();
            }
        });
        spool = mounted;
        let space = spool.space();
        assert_eq!(space.free_bytes + space.held_by_dead_head, empty, "round {round}: {space:?}");
    }
}

for_each_sector_size!(the_smallest_spool_fills_reclaims_and_recovers);

#[test]
fn message_table_full_is_refused() {
    let flash = Flash::new(512 * 1024);
    let mut spool: Spool<Flash, TestRandom, 128, 4> = Spool::new(flash, 0..0x40000, &KEY, TestRandom::new(1)).unwrap();
    block_on(async {
        spool.mount().await.unwrap();
        let envelope = Envelope::new(b"s@x", &[b"r@y"]).unwrap();
        for _ in 0..4 {
            let writer = spool.begin_message(&envelope, 10).await.unwrap();
            spool.commit(writer).await.unwrap();
        }
        assert!(!spool.can_accept(10));
        assert_eq!(spool.begin_message(&envelope, 10).await.err(), Some(SpoolError::MessageTableFull));
    });
}

#[test]
fn invalid_regions_are_refused() {
    let flash = new_flash();
    let make = |region: core::ops::Range<u32>| TestSpool::new(flash.clone(), region, &KEY, TestRandom::new(1)).err();
    assert_eq!(make(0x100..0x10000), Some(SpoolError::InvalidRegion));
    assert_eq!(make(0..0x2000), Some(SpoolError::InvalidRegion), "too few sectors");
    assert_eq!(make(0..0x100000), Some(SpoolError::InvalidRegion), "beyond the flash");
    assert_eq!(make(0..0x41000), Some(SpoolError::InvalidRegion), "more sectors than the table");
}

fn geometry_round_trip<const WRITE: usize, const ERASE: usize>() {
    let flash = SimulatedFlash::<WRITE, ERASE>::new(ERASE * 8);
    let region = ERASE as u32..(ERASE * 7) as u32;
    let mut spool: Spool<_, _, 8, 8> = Spool::new(flash.clone(), region.clone(), &KEY, TestRandom::new(5)).unwrap();
    let data = message_bytes(9, ERASE * 2 + 777);
    let id = block_on(async {
        spool.mount().await.unwrap();
        let envelope = Envelope::new(b"s@x", &[b"r@y"]).unwrap();
        let mut writer = spool.begin_message(&envelope, data.len() as u32).await.unwrap();
        for part in data.chunks(999) {
            spool.append(&mut writer, part).await.unwrap();
        }
        let report = spool.commit(writer).await.unwrap();
        assert_eq!(report.work.sectors_erased, 0);
        report.id
    });
    let mut spool: Spool<_, _, 8, 8> = Spool::new(flash, region, &KEY, TestRandom::new(6)).unwrap();
    block_on(async {
        let report = spool.mount().await.unwrap();
        assert!(report.is_clean(), "{report:?}");
        let mut reader = spool.open_message(id).await.unwrap();
        let mut out = Vec::new();
        let mut chunk = [0u8; CHUNK_CAPACITY];
        loop {
            let length = spool.read_chunk(&mut reader, &mut chunk).await.unwrap();
            if length == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..length]);
        }
        assert_eq!(out, data);
        spool.delete(id).await.unwrap();
    });
}

#[test]
fn write_sizes_from_1_to_32_and_erase_sizes_up_to_128_kib() {
    geometry_round_trip::<1, 4096>();
    geometry_round_trip::<4, 4096>();
    geometry_round_trip::<8, 8192>();
    geometry_round_trip::<16, 4096>();
    geometry_round_trip::<32, 4096>();
    geometry_round_trip::<32, 65536>();
    geometry_round_trip::<4, 131072>();
}

#[test]
fn wrong_key_sees_nothing() {
    let flash = new_flash();
    let (mut spool, _) = mount(&flash, 1);
    block_on(enqueue(&mut spool, &message_bytes(1, 3000), 1, 300)).unwrap();
    let mut other = TestSpool::new(flash.clone(), REGION, &[8; 32], TestRandom::new(1)).unwrap();
    let report = block_on(other.mount()).unwrap();
    assert_eq!(report.messages_found, 0);
    assert!(!report.is_clean(), "foreign sectors are reported: {report:?}");
}

#[test]
fn data_on_flash_is_not_plaintext() {
    let flash = new_flash();
    let (mut spool, _) = mount(&flash, 1);
    let secret = b"Subject: the secret plan\r\n\r\nmeet at dawn by the old mill".repeat(20);
    block_on(enqueue(&mut spool, &secret, 1, 100)).unwrap();
    let image = flash.snapshot();
    assert!(!image.windows(12).any(|w| w == b"secret plan\r"));
    assert!(!image.windows(13).any(|w| w == b"user0@example"));
}

/// The MX commits its writer where the transaction keeps it: the message is the same as with
/// `commit`, survives a remount, and the finished writer takes nothing more.
#[test]
fn a_writer_committed_in_place_is_finished() {
    let flash = new_flash();
    let (mut spool, _) = mount(&flash, 1);
    let data = message_bytes(9, 3_000);
    let id = block_on(async {
        let envelope = Envelope::new(b"sender@example.net", &[b"user0@example.org"]).unwrap();
        let mut writer = spool.begin_message(&envelope, data.len() as u32).await.unwrap();
        spool.append(&mut writer, &data).await.unwrap();
        let report = spool.commit_in_place(&mut writer).await.unwrap();
        assert_eq!(report.length, data.len() as u32);
        assert!(matches!(spool.append(&mut writer, b"more").await, Err(SpoolError::WriterFinished)));
        assert!(matches!(spool.commit_in_place(&mut writer).await, Err(SpoolError::WriterFinished)), "committed once");
        report.id
    });
    let (mut spool, report) = mount(&flash, 2);
    assert_eq!(report.messages_found, 1);
    assert_eq!(block_on(read_all(&mut spool, id)).unwrap(), data);
}
