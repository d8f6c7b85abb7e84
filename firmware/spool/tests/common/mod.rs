//! Shared helpers for the spool's integration tests: a flash of 32 erase sectors of any size
//! (4 KiB by default), the queue's region in it, mounting, message data, and
//! [`for_each_sector_size!`](crate::for_each_sector_size) to run one test body per sector size.
#![allow(dead_code)]

use embedded_storage_async::nor_flash::NorFlash;
use homemx_spool::testing::{block_on, LoggedOperation, OperationKind, SimulatedFlash, SimulatedFlashError, TestRandom};
use homemx_spool::{Envelope, MessageId, RecoveryReport, Spool, SpoolError, CHUNK_CAPACITY};

/// A simulated NOR flash with 4-byte words and `SECTOR`-byte erase sectors.
pub type SizedFlash<const SECTOR: usize> = SimulatedFlash<4, SECTOR>;
/// The spool the tests use on such a flash (64 sectors at most, 32 message slots).
pub type SizedSpool<const SECTOR: usize> = Spool<SizedFlash<SECTOR>, TestRandom, 64, 32>;
pub type Flash = SizedFlash<4096>;
pub type TestSpool = SizedSpool<4096>;
pub type Error = SpoolError<SimulatedFlashError>;

pub const KEY: [u8; 32] = [7; 32];
/// Sectors of [`new_sized_flash`].
pub const FLASH_SECTORS: usize = 32;
/// The queue's region on a flash of `sector`-byte sectors: 16 sectors after the first two
/// (the key-value store's, see `tests/key_value.rs`).
pub const fn sized_region(sector: usize) -> core::ops::Range<u32> {
    2 * sector as u32..18 * sector as u32
}
/// The queue's region on the 4 KiB flash: 16 sectors starting 8 KiB into 128 KiB.
pub const REGION: core::ops::Range<u32> = sized_region(4096);

/// A fresh flash of [`FLASH_SECTORS`] sectors of `SECTOR` bytes.
pub fn new_sized_flash<const SECTOR: usize>() -> SizedFlash<SECTOR> {
    SizedFlash::<SECTOR>::new(FLASH_SECTORS * SECTOR)
}

/// A fresh flash of 32 sectors of 4 KiB.
pub fn new_flash() -> Flash {
    new_sized_flash::<4096>()
}

/// Runs one test body per erase sector size: 4, 8, 16, 64 and 128 KiB (32 KiB, between them,
/// is left out: every size is another copy of the spool in each test binary, 35 s more of
/// compiling, and nothing in the layout depends on the size). For a generic
/// `fn $test<const SECTOR: usize>()`, defines module `$test` with the tests `sectors_4_kib` …
/// `sectors_128_kib`, each calling `$test::<SECTOR>()`.
#[macro_export]
macro_rules! for_each_sector_size {
    ($test:ident) => {
        mod $test {
            #[test]
            fn sectors_4_kib() {
                super::$test::<4096>()
            }
            #[test]
            fn sectors_8_kib() {
                super::$test::<8192>()
            }
            #[test]
            fn sectors_16_kib() {
                super::$test::<16384>()
            }
            #[test]
            fn sectors_64_kib() {
                super::$test::<65536>()
            }
            #[test]
            fn sectors_128_kib() {
                super::$test::<131072>()
            }
        }
    };
}

/// Lengths that scale with the sector size: `bytes` at 4 KiB sectors, `bytes × SECTOR / 4096`
/// at others, so a message that spans sectors at 4 KiB spans as many at every size.
pub const fn scaled<const SECTOR: usize>(bytes: usize) -> usize {
    bytes * (SECTOR / 4096)
}

pub fn mount<const SECTOR: usize>(flash: &SizedFlash<SECTOR>, seed: u64) -> (SizedSpool<SECTOR>, RecoveryReport) {
    try_mount(flash, seed).unwrap()
}

pub fn mount_region<const SECTOR: usize>(
    flash: &SizedFlash<SECTOR>,
    region: core::ops::Range<u32>,
    seed: u64,
) -> (SizedSpool<SECTOR>, RecoveryReport) {
    let mut spool = SizedSpool::<SECTOR>::new(flash.clone(), region, &KEY, TestRandom::new(seed)).unwrap();
    let report = block_on(spool.mount()).unwrap();
    (spool, report)
}

pub fn try_mount<const SECTOR: usize>(flash: &SizedFlash<SECTOR>, seed: u64) -> Result<(SizedSpool<SECTOR>, RecoveryReport), Error> {
    let mut spool = SizedSpool::<SECTOR>::new(flash.clone(), sized_region(SECTOR), &KEY, TestRandom::new(seed))?;
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
pub async fn enqueue<F: NorFlash, const SECTORS: usize, const MESSAGES: usize>(
    spool: &mut Spool<F, TestRandom, SECTORS, MESSAGES>,
    data: &[u8],
    recipient_count: usize,
    piece: usize,
) -> Result<MessageId, SpoolError<F::Error>> {
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

pub async fn read_all<F: NorFlash, const SECTORS: usize, const MESSAGES: usize>(
    spool: &mut Spool<F, TestRandom, SECTORS, MESSAGES>,
    id: MessageId,
) -> Result<Vec<u8>, SpoolError<F::Error>> {
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

/// The record kind byte of a message data chunk (`layout::RecordKind::Chunk`).
const CHUNK_RECORD_KIND: u8 = 2;

/// The cut points (1-based operation numbers for `cut_power_at`) of a run whose operations
/// are `log`, on a flash of `sector`-byte sectors whose sector header takes `header_extent`
/// bytes: every one if there are at most `full_sweep` of them; otherwise every operation that
/// is not a chunk record in the middle of a sector (erases, sector headers, envelope, commit,
/// state and delete records, the chunks that open and close a sector: what depends on the
/// sector size and on the order of records) and `chunk_samples` of the others, evenly spread.
pub fn cut_points(log: &[LoggedOperation], sector: usize, header_extent: usize, full_sweep: usize, chunk_samples: usize) -> Vec<u64> {
    let all = (1..=log.len() as u64).collect::<Vec<_>>();
    if log.len() <= full_sweep {
        return all;
    }
    let inner_chunk = |cut: &u64| {
        let operation = &log[*cut as usize - 1];
        match operation.kind {
            OperationKind::Program { prefix } => {
                let offset = operation.address as usize % sector;
                let end = offset + operation.length as usize;
                prefix[0] == CHUNK_RECORD_KIND && prefix[1] == !CHUNK_RECORD_KIND && offset > header_extent && end < sector
            }
            OperationKind::Erase => false,
        }
    };
    let (inner, mut points): (Vec<u64>, Vec<u64>) = all.into_iter().partition(inner_chunk);
    let step = inner.len().div_ceil(chunk_samples.max(1)).max(1);
    points.extend(inner.into_iter().step_by(step));
    points.sort_unstable();
    points
}
