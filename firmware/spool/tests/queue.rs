//! Unit-level behaviour of the message queue: round trips, envelopes, delivery state,
//! deletion and reclaiming, free-space accounting, geometries.

mod common;

use common::*;
use homemx_spool::testing::{block_on, SimulatedFlash, TestRandom};
use homemx_spool::{
    DeliveryState, Envelope, MessageId, RecipientState, Spool, SpoolError, CHUNK_CAPACITY, ENVELOPE_CAPACITY,
};

#[test]
fn round_trip_small_and_large_messages() {
    let flash = new_flash();
    let (mut spool, report) = mount(&flash, 1);
    assert!(report.is_clean());
    assert_eq!(report.sectors_erased, 16);
    block_on(async {
        for (seed, length, piece) in [(1, 0, 1), (2, 1, 1), (3, 1023, 7), (4, 1024, 1024), (5, 1025, 100), (6, 10_000, 333), (7, 20_000, 4096)] {
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
        for (id, (seed, length)) in ids.into_iter().zip([(1, 0), (2, 1), (3, 1023), (4, 1024), (5, 1025), (6, 10_000), (7, 20_000)]) {
            assert_eq!(read_all(&mut spool, id).await.unwrap(), message_bytes(seed, length));
        }
    });
}

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
        assert_eq!(envelope.recipients()[2], b"user2@example.org");
    });
    assert!(Envelope::new(b"a", &[]).is_none());
    let long = vec![b'x'; 600];
    assert!(Envelope::new(&long, &[&long[..]]).is_none(), "over the envelope capacity");
    let many: Vec<&[u8]> = (0..33).map(|_| &b"a@b"[..]).collect();
    assert!(Envelope::new(b"", &many).is_none());
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

#[test]
fn delete_reclaims_space_and_erases_nothing_before_commit() {
    let flash = new_flash();
    let (mut spool, _) = mount(&flash, 1);
    let empty = spool.free_bytes();
    block_on(async {
        let mut ids = Vec::new();
        for round in 0..40u32 {
            let id = enqueue(&mut spool, &message_bytes(round, 5000), 1, 1000).await.unwrap();
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
    // Only the head sector stays in use; the rest is erased again.
    let space = spool.space();
    assert_eq!(space.sectors_in_use, 1, "{space:?}");
    assert!(spool.free_bytes() + 4096 >= empty, "{} vs {}", spool.free_bytes(), empty);
    let (spool, report) = mount(&flash, 3);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(spool.messages().count(), 0);
}

#[test]
fn commit_path_never_erases() {
    let flash = new_flash();
    let (mut spool, _) = mount(&flash, 1);
    block_on(async {
        for round in 0..60u32 {
            let envelope = Envelope::new(b"s@x", &[b"r@y"]).unwrap();
            let data = message_bytes(round, 10_240);
            let mut writer = spool.begin_message(&envelope, 10_240).await.unwrap();
            for part in data.chunks(512) {
                spool.append(&mut writer, part).await.unwrap();
            }
            let report = spool.commit(writer).await.unwrap();
            assert_eq!(report.work.sectors_erased, 0, "erase before 250");
            assert!(report.work.bytes_programmed as f64 <= 1.1 * 10_240.0, "{report:?}");
            spool.delete(report.id).await.unwrap();
        }
    });
}

#[test]
fn free_space_is_refused_before_the_spool_is_full() {
    let flash = new_flash();
    let (mut spool, _) = mount(&flash, 1);
    block_on(async {
        let mut accepted = 0;
        loop {
            if !spool.can_accept(6000) {
                break;
            }
            // Whatever was admitted must always go through completely.
            enqueue(&mut spool, &message_bytes(accepted, 6000), 1, 700).await.unwrap();
            accepted += 1;
        }
        assert!(accepted >= 8, "only {accepted} accepted");
        let envelope = Envelope::new(b"s@x", &[b"r@y"]).unwrap();
        assert_eq!(spool.begin_message(&envelope, 6000).await.err(), Some(SpoolError::NoSpace));
        // Delivery bookkeeping and deletion still work on a full spool.
        let ids: Vec<_> = spool.messages().map(|m| m.id).collect();
        for &id in &ids {
            spool.mark_delivered(id, 0).await.unwrap();
        }
        spool.delete(ids[0]).await.unwrap();
        spool.delete(ids[1]).await.unwrap();
        assert!(spool.can_accept(6000));
        // A message appended beyond its reservation is refused once space runs out.
        let mut writer = spool.begin_message(&envelope, 10).await.unwrap();
        let mut refused = false;
        for _ in 0..100 {
            if spool.append(&mut writer, &[b'x'; 1000]).await.is_err() {
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
