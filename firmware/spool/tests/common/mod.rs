//! Shared helpers for the spool's integration tests.
#![allow(dead_code)]

use homemx_spool::testing::{block_on, SimulatedFlash, SimulatedFlashError, TestRandom};
use homemx_spool::{Envelope, MessageId, RecoveryReport, Spool, SpoolError, CHUNK_CAPACITY};

pub type Flash = SimulatedFlash<4, 4096>;
pub type TestSpool = Spool<Flash, TestRandom, 64, 32>;
pub type Error = SpoolError<SimulatedFlashError>;

pub const KEY: [u8; 32] = [7; 32];
/// The queue's region: 16 sectors starting 8 KiB into a 128 KiB flash (others own the rest).
pub const REGION: core::ops::Range<u32> = 0x2000..0x12000;

pub fn new_flash() -> Flash {
    Flash::new(128 * 1024)
}

pub fn mount(flash: &Flash, seed: u64) -> (TestSpool, RecoveryReport) {
    let mut spool = TestSpool::new(flash.clone(), REGION, &KEY, TestRandom::new(seed)).unwrap();
    let report = block_on(spool.mount()).unwrap();
    (spool, report)
}

pub fn mount_region(flash: &Flash, region: core::ops::Range<u32>, seed: u64) -> (TestSpool, RecoveryReport) {
    let mut spool = TestSpool::new(flash.clone(), region, &KEY, TestRandom::new(seed)).unwrap();
    let report = block_on(spool.mount()).unwrap();
    (spool, report)
}

pub fn try_mount(flash: &Flash, seed: u64) -> Result<(TestSpool, RecoveryReport), Error> {
    let mut spool = TestSpool::new(flash.clone(), REGION, &KEY, TestRandom::new(seed))?;
    let report = block_on(spool.mount())?;
    Ok((spool, report))
}

/// Deterministic message text of `length` bytes.
pub fn message_bytes(seed: u32, length: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            b' ' + (state % 90) as u8
        })
        .collect()
}

pub fn recipients(count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|index| format!("user{index}@example.org").into_bytes()).collect()
}

/// Enqueues a message in pieces of `piece` bytes.
pub async fn enqueue(spool: &mut TestSpool, data: &[u8], recipient_count: usize, piece: usize) -> Result<MessageId, Error> {
    let addresses = recipients(recipient_count);
    let list: Vec<&[u8]> = addresses.iter().map(|a| a.as_slice()).collect();
    let envelope = Envelope::new(b"sender@example.net", &list).unwrap();
    let mut writer = spool.begin_message(&envelope, data.len() as u32).await?;
    for part in data.chunks(piece.max(1)) {
        if let Err(error) = spool.append(&mut writer, part).await {
            spool.abort(writer);
            return Err(error);
        }
    }
    Ok(spool.commit(writer).await?.id)
}

pub async fn read_all(spool: &mut TestSpool, id: MessageId) -> Result<Vec<u8>, Error> {
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
