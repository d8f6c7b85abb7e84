//! Test build only (feature `spool-exercise`): runs the real spool on the board's flash in a
//! loop so the QEMU test can cut the power at any moment and check what survives.
//!
//! Each pass writes a 10 KB message whose bytes derive from its id (so any reader can check
//! them), commits it and logs `spool exercise: committed …`, then reads every queued message
//! back and checks every byte, and deletes the oldest once more than four are queued. After
//! a restart the mount report and the check of every message are logged. The spool key is a
//! fixed test key: this build is never the product (the key store owns the real key).
//!
//! Owns: the spool exercise task and its spool (test build only). Calls: `cpu_load`, `random`, `storage`.

use embassy_time::Timer;
use homemx_board::BoardFlash;
use homemx_spool::{Envelope, Spool, CHUNK_CAPACITY};
use sha2::{Digest, Sha256};

use crate::random::DerivedRandom;
use crate::storage::{SPOOL, SPOOL_MESSAGES, SPOOL_SECTORS};

const TEST_KEY: [u8; 32] = *b"homemx spool exercise test key!!";
const MESSAGE_LENGTH: usize = 10 * 1024;
const KEEP_MESSAGES: usize = 4;

type Flash = crate::storage::BoardFlash;

/// The bytes at `offset..offset + out.len()` of the body of the message tagged `tag`: the
/// tag itself in the first four bytes, then SHA-256 blocks of (tag, block number).
fn expected_bytes(tag: u32, offset: usize, out: &mut [u8]) {
    let mut position = offset;
    let mut filled = 0;
    while filled < out.len() {
        let block = position / 32;
        let digest = Sha256::new().chain_update(tag.to_le_bytes()).chain_update((block as u32).to_le_bytes()).finalize();
        let start = position % 32;
        let take = (32 - start).min(out.len() - filled);
        out[filled..filled + take].copy_from_slice(&digest[start..start + take]);
        filled += take;
        position += take;
    }
    let tag_bytes = tag.to_le_bytes();
    for index in offset..(offset + out.len()).min(4) {
        out[index - offset] = tag_bytes[index];
    }
}

/// Reads a message back; returns its tag if every byte is as written.
async fn check_message<F: BoardFlash>(
    spool: &mut Spool<F, DerivedRandom, SPOOL_SECTORS, SPOOL_MESSAGES>,
    id: homemx_spool::MessageId,
) -> Option<u32> {
    let Ok(mut reader) = spool.open_message(id).await else {
        return None;
    };
    let mut chunk = [0u8; CHUNK_CAPACITY];
    let mut expected = [0u8; CHUNK_CAPACITY];
    let mut tag = None;
    let mut total = 0usize;
    loop {
        let length = match spool.read_chunk(&mut reader, &mut chunk).await {
            Ok(0) => break,
            Ok(length) => length,
            Err(_) => return None,
        };
        if tag.is_none() && length < 4 {
            return None;
        }
        let tag = *tag.get_or_insert_with(|| u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
        expected_bytes(tag, total, &mut expected[..length]);
        if chunk[..length] != expected[..length] {
            return None;
        }
        total += length;
    }
    (total == MESSAGE_LENGTH).then_some(tag?)
}

#[embassy_executor::task]
pub async fn spool_exercise_task(flash: Flash, random: DerivedRandom, mut tags: DerivedRandom) {
    let region = SPOOL;
    let mut spool: Spool<Flash, DerivedRandom, SPOOL_SECTORS, SPOOL_MESSAGES> =
        match Spool::new(flash, region, &TEST_KEY, random) {
            Ok(spool) => spool,
            Err(_) => {
                defmt::error!("spool exercise: bad spool region");
                return;
            }
        };
    let before = crate::cpu_load::busy_core_clock_counts();
    let report = match spool.mount().await {
        Ok(report) => report,
        Err(_) => {
            defmt::error!("spool exercise: mount failed");
            return;
        }
    };
    let mount_counts = crate::cpu_load::busy_core_clock_counts() - before;
    defmt::info!(
        "spool exercise: mounted: {=usize} messages, {=u32} corrupt records, {=u32} damaged messages, {=u32} torn writes repaired, {=u32} incomplete dropped, clean {=bool}, busy counts {=u64}",
        spool.messages().count(),
        report.records_corrupt,
        report.messages_damaged,
        report.torn_writes_repaired,
        report.messages_incomplete_dropped,
        report.is_clean(),
        mount_counts
    );
    let _ = spool.maintain().await;
    let mut first_pass = true;
    loop {
        // Check every queued message.
        let ids: heapless::Vec<homemx_spool::MessageId, SPOOL_MESSAGES> = spool.messages().map(|message| message.id).collect();
        let mut bad = 0usize;
        let mut oldest_tag = None;
        for &id in ids.iter() {
            match check_message(&mut spool, id).await {
                Some(tag) => {
                    oldest_tag.get_or_insert(tag);
                    if first_pass {
                        defmt::info!("spool exercise: present tag {=u32:x}", tag);
                    }
                }
                None => {
                    bad += 1;
                    defmt::error!("spool exercise: message {} does not read back intact", id.0);
                }
            }
        }
        defmt::info!("spool exercise: checked {=usize} messages, {=usize} bad", ids.len(), bad);
        first_pass = false;

        // Write one more.
        let tag = tags.next_u64() as u32;
        let Some(envelope) = Envelope::new(b"exercise@homemx.test", &[b"postmaster@homemx.test"]) else {
            return;
        };
        defmt::info!("spool exercise: writing tag {=u32:x}", tag);
        let statistics_before = spool.statistics();
        let busy_before = crate::cpu_load::busy_core_clock_counts();
        let Ok(mut writer) = spool.begin_message(&envelope, MESSAGE_LENGTH as u32).await else {
            defmt::error!("spool exercise: no space");
            return;
        };
        let mut chunk = [0u8; CHUNK_CAPACITY];
        let mut written = 0;
        while written < MESSAGE_LENGTH {
            let length = CHUNK_CAPACITY.min(MESSAGE_LENGTH - written);
            expected_bytes(tag, written, &mut chunk[..length]);
            if spool.append(&mut writer, &chunk[..length]).await.is_err() {
                defmt::error!("spool exercise: append failed");
                return;
            }
            written += length;
        }
        match spool.commit(writer).await {
            Ok(commit) => {
                let work = spool.statistics().since(&statistics_before);
                defmt::info!(
                    "spool exercise: committed message {=u32} tag {=u32:x}, {=u32} bytes; programmed {=u64} bytes, erased {=u64} sectors, busy counts {=u64}",
                    commit.id.0,
                    tag,
                    commit.length,
                    work.bytes_programmed,
                    work.sectors_erased,
                    crate::cpu_load::busy_core_clock_counts() - busy_before
                );
            }
            Err(_) => {
                defmt::error!("spool exercise: commit failed");
                return;
            }
        }
        if ids.len() >= KEEP_MESSAGES {
            defmt::info!("spool exercise: deleting tag {=u32:x}", oldest_tag.unwrap_or(0));
            if spool.delete(ids[0]).await.is_err() {
                defmt::error!("spool exercise: delete failed");
                return;
            }
        }
        Timer::after_millis(5).await;
    }
}
