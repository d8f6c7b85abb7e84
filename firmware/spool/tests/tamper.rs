//! Tamper: flipping any bit of any record on flash is detected and never delivered as good.
//!
//! Exhaustive over every bit of every programmed byte of a small spool; sampled (a fixed
//! pseudo-random set of bits) over a larger one. "Detected" means the mount report is not
//! clean or reading a message fails with `Corrupt`, and every message that reads back
//! successfully is byte-for-byte what was stored.

mod common;

use common::*;
use homemx_spool::testing::block_on;
use homemx_spool::SpoolError;
use std::collections::BTreeMap;
use std::ops::Range;

/// Stores `messages`, returns their data by id, and the programmed (non-0xFF) byte addresses.
fn build(messages: &[(u32, usize)], region: Range<u32>) -> (Flash, BTreeMap<homemx_spool::MessageId, Vec<u8>>, Vec<usize>) {
    let flash = new_flash();
    let (mut spool, _) = mount_region(&flash, region.clone(), 1);
    let mut stored = BTreeMap::new();
    block_on(async {
        for &(seed, length) in messages {
            let data = message_bytes(seed, length);
            let id = enqueue(&mut spool, &data, 1, 400).await.unwrap();
            stored.insert(id, data);
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
fn check_flip(flash: &Flash, region: &Range<u32>, stored: &BTreeMap<homemx_spool::MessageId, Vec<u8>>, address: usize, bit: u8) {
    flash.flip_bit(address, bit);
    let (mut spool, report) = mount_region(flash, region.clone(), 2);
    let mut detected = !report.is_clean();
    block_on(async {
        for (&id, data) in stored {
            match read_all(&mut spool, id).await {
                Ok(read) => assert_eq!(&read, data, "flip at {address:#x} bit {bit}: wrong data delivered"),
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
    // A spool of three sectors: every mount reads little, so every bit can be tried.
    let region = 0x2000..0x5000;
    let (flash, stored, programmed) = build(&[(1, 100), (2, 60)], region.clone());
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
    let (flash, stored, programmed) = build(&[(1, 10_000), (2, 3_000), (3, 7_000), (4, 500)], REGION);
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
fn records_moved_elsewhere_do_not_open() {
    // Copy a whole sector of records over another sector: every record is bound to its place.
    let (flash, stored, _) = build(&[(1, 6_000), (2, 6_000)], REGION);
    let image = flash.snapshot();
    let first = REGION.start as usize;
    flash.overwrite(first + 4096, &image[first..first + 4096]);
    let (mut spool, report) = mount(&flash, 3);
    assert!(!report.is_clean(), "{report:?}");
    block_on(async {
        for (&id, data) in &stored {
            if let Ok(read) = read_all(&mut spool, id).await {
                assert_eq!(&read, data);
            }
        }
    });
}
