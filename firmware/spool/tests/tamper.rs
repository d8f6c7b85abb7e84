//! Tamper: flipping any bit of any record on flash is detected and never delivered as good.
//!
//! Exhaustive over every bit of every programmed byte of a small spool; sampled (a fixed
//! pseudo-random set of bits) over a larger one. "Detected" means the mount report is not
//! clean or reading a message fails with `Corrupt`, and every message that reads back
//! successfully is byte-for-byte what was stored (its envelope too). Multi-record envelopes
//! (110 recipients) are covered by the sampled spool and by a flip in every byte of one
//! such envelope.

mod common;

use common::*;
use homemx_spool::testing::block_on;
use homemx_spool::{SpoolError, ENVELOPE_CAPACITY};
use std::collections::BTreeMap;
use std::ops::Range;

type Stored = BTreeMap<homemx_spool::MessageId, (Vec<u8>, usize)>;

/// Stores `messages` (seed, length, recipients), returns their data and recipient count by
/// id, and the programmed (non-0xFF) byte addresses.
fn build(messages: &[(u32, usize, usize)], region: Range<u32>) -> (Flash, Stored, Vec<usize>) {
    let flash = new_flash();
    let (mut spool, _) = mount_region(&flash, region.clone(), 1);
    let mut stored = BTreeMap::new();
    block_on(async {
        for &(seed, length, recipients) in messages {
            let data = message_bytes(seed, length);
            let id = enqueue(&mut spool, &data, recipients, 400).await.unwrap();
            stored.insert(id, (data, recipients));
        }
        let first = *stored.keys().next().unwrap();
        spool.mark_delivered(first, 0).await.unwrap();
    });
    let image = flash.snapshot();
    // Every byte from a sector's start to its last programmed byte: headers, records, padding.
    let mut programmed = Vec::new();
    for sector in (region.start as usize..region.end as usize).step_by(4096) {
        if let Some(last) = (sector..sector + 4096).rev().find(|&address| image[address] != 0xFF) {
            programmed.extend(sector..=last);
        }
    }
    (flash, stored, programmed)
}

/// Flips one bit, remounts, checks detection, flips it back.
fn check_flip(flash: &Flash, region: &Range<u32>, stored: &Stored, address: usize, bit: u8) {
    flash.flip_bit(address, bit);
    let (mut spool, report) = mount_region(flash, region.clone(), 2);
    let mut detected = !report.is_clean();
    block_on(async {
        for (&id, (data, recipient_count)) in stored {
            match read_all(&mut spool, id).await {
                Ok(read) => assert_eq!(&read, data, "flip at {address:#x} bit {bit}: wrong data delivered"),
                Err(SpoolError::Corrupt) | Err(SpoolError::UnknownMessage) => detected = true,
                Err(other) => panic!("flip at {address:#x} bit {bit}: {other:?}"),
            }
            let mut buffer = [0u8; ENVELOPE_CAPACITY];
            match spool.read_envelope(id, &mut buffer).await {
                Ok(envelope) => {
                    let expected = recipients(*recipient_count);
                    let expected: Vec<&[u8]> = expected.iter().map(|a| a.as_slice()).collect();
                    assert!(envelope.recipients().eq(expected.iter().copied()), "flip at {address:#x} bit {bit}: wrong envelope");
                }
                Err(SpoolError::Corrupt) | Err(SpoolError::UnknownMessage) => detected = true,
                Err(other) => panic!("flip at {address:#x} bit {bit}: {other:?}"),
            }
        }
    });
    // A changed delivery state would also be noticed: it must not silently change.
    let state = spool.messages().next().map(|m| m.delivery.delivered);
    if state != Some(1) {
        detected = true;
    }
    assert!(detected, "flip at {address:#x} bit {bit} went unnoticed: {report:?}");
    flash.flip_bit(address, bit);
}

#[test]
fn every_bit_of_a_small_spool() {
    // A spool of four sectors (the fewest of 4 KiB it takes): every mount reads little, so
    // every bit can be tried.
    let region = 0x2000..0x6000;
    let (flash, stored, programmed) = build(&[(1, 100, 1), (2, 60, 2)], region.clone());
    let mut flips = 0;
    for &address in &programmed {
        for bit in 0..8 {
            check_flip(&flash, &region, &stored, address, bit);
            flips += 1;
        }
    }
    println!("tamper: {flips} single-bit flips over {} record bytes, all detected", programmed.len());
}

#[test]
fn sampled_bits_of_a_larger_spool() {
    let (flash, stored, programmed) = build(&[(1, 10_000, 1), (2, 3_000, 110), (3, 7_000, 2), (4, 500, 128)], REGION);
    let mut state = 0x1234_5678_9abc_def1u64;
    let samples = 600;
    for _ in 0..samples {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let address = programmed[(state % programmed.len() as u64) as usize];
        check_flip(&flash, &REGION, &stored, address, (state >> 32) as u8 % 8);
    }
    println!("tamper: {samples} sampled flips over {} record bytes, all detected", programmed.len());
}

#[test]
fn a_flip_in_every_byte_of_a_multi_record_envelope() {
    // The first message (110 recipients: three envelope records) starts right after the
    // first sector header; its envelope ends where its first chunk begins.
    let region = 0x2000..0x6000;
    let (flash, stored, _) = build(&[(1, 300, 110), (2, 50, 1)], region.clone());
    let envelope_length = 9 + 2 + 18 + (0..110).map(|index| 2 + format!("user{index}@example.org").len()).sum::<usize>();
    assert!(envelope_length > 2048, "three records");
    let start = region.start as usize + 40;
    let end = start + (0..envelope_length.div_ceil(1024)).map(|part| (28 + (envelope_length - part * 1024).min(1024)).div_ceil(4) * 4).sum::<usize>();
    let image = flash.snapshot();
    assert_eq!(image[end], 2, "a chunk record follows the envelope records");
    for address in start..end {
        check_flip(&flash, &region, &stored, address, (address % 8) as u8);
    }
    println!("tamper: one flip in each of {} envelope record bytes, all detected", end - start);
}

#[test]
fn records_moved_elsewhere_do_not_open() {
    // Copy a whole sector of records over another sector: every record is bound to its place.
    let (flash, stored, _) = build(&[(1, 6_000, 1), (2, 6_000, 110)], REGION);
    let image = flash.snapshot();
    let first = REGION.start as usize;
    flash.overwrite(first + 4096, &image[first..first + 4096]);
    let (mut spool, report) = mount(&flash, 3);
    assert!(!report.is_clean(), "{report:?}");
    block_on(async {
        for (&id, (data, _)) in &stored {
            if let Ok(read) = read_all(&mut spool, id).await {
                assert_eq!(&read, data);
            }
        }
    });
}
