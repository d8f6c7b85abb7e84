//! The stores on simulated flashes shaped as this board's: the spool on the Octo-SPI NOR's
//! geometry (4 KiB sectors, the driver's 4-byte program unit) at the exact region and sector
//! count of `FLASH_MAP`, and on the internal flash's (8 KiB sectors, 16-byte quad-words); the
//! key store on the internal flash's, at `FLASH_MAP`'s key store region. Each message is
//! written, committed without an erase, and read back after a "reboot" (a new spool on the
//! same flash).

use homemx_bsp_stm32h573i_dk::partition_map::{OCTO_SPI_NOR_SECTOR_SIZE, OCTO_SPI_NOR_WORD_SIZE, SECTOR_SIZE, WORD_SIZE};
use homemx_bsp_stm32h573i_dk::FLASH_MAP;
use homemx_keystore::{Keystore, KeystoreConfig, KeystoreState};
use homemx_spool::testing::{block_on, SimulatedFlash, TestRandom};
use homemx_spool::{Envelope, Spool, CHUNK_CAPACITY};

const KEY: [u8; 32] = [0x5a; 32];
const MESSAGES: usize = 16;

/// The Octo-SPI NOR as the driver offers it.
type NorFlash = SimulatedFlash<OCTO_SPI_NOR_WORD_SIZE, { OCTO_SPI_NOR_SECTOR_SIZE as usize }>;
/// The internal flash as `flash::DataPartition` offers it.
type InternalFlash = SimulatedFlash<WORD_SIZE, { SECTOR_SIZE as usize }>;

const NOR_SPOOL_SECTORS: usize = FLASH_MAP.spool_sectors as usize;
/// The spool's sectors when it was in the internal flash (before the Octo-SPI NOR).
const INTERNAL_SPOOL_SECTORS: usize = 92;

fn message(seed: u8, length: usize) -> Vec<u8> {
    (0..length).map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Writes three messages (the largest crossing sectors), commits each without an erase,
/// then mounts a new spool on the same flash and reads every byte back.
fn round_trip<F, const SECTORS: usize>(flash: F, region: core::ops::Range<u32>)
where
    F: embedded_storage_async::nor_flash::NorFlash + Clone,
    F::Error: core::fmt::Debug,
{
    let sector = F::ERASE_SIZE;
    let lengths = [1, 10 * 1024, 3 * sector + 777];
    let mut spool: Box<Spool<F, TestRandom, SECTORS, MESSAGES>> = Box::new(Spool::new(flash.clone(), region.clone(), &KEY, TestRandom::new(1)).unwrap());
    let ids: Vec<_> = block_on(async {
        spool.mount().await.unwrap();
        let mut ids = Vec::new();
        for (seed, &length) in lengths.iter().enumerate() {
            let data = message(seed as u8, length);
            let envelope = Envelope::new(b"sender@example.org", &[b"owner@example.net"]).unwrap();
            let mut writer = spool.begin_message(&envelope, length as u32).await.unwrap();
            for part in data.chunks(1000) {
                spool.append(&mut writer, part).await.unwrap();
            }
            let report = spool.commit(writer).await.unwrap();
            assert_eq!(report.work.sectors_erased, 0, "no erase before 250");
            ids.push(report.id);
        }
        ids
    });
    drop(spool);
    let mut spool: Box<Spool<F, TestRandom, SECTORS, MESSAGES>> = Box::new(Spool::new(flash, region, &KEY, TestRandom::new(2)).unwrap());
    block_on(async {
        let report = spool.mount().await.unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(spool.messages().count(), lengths.len());
        for (seed, (&id, &length)) in ids.iter().zip(&lengths).enumerate() {
            let mut reader = spool.open_message(id).await.unwrap();
            let mut read = Vec::new();
            let mut chunk = [0u8; CHUNK_CAPACITY];
            loop {
                let got = spool.read_chunk(&mut reader, &mut chunk).await.unwrap();
                if got == 0 {
                    break;
                }
                read.extend_from_slice(&chunk[..got]);
            }
            assert_eq!(read, message(seed as u8, length), "message {seed}");
        }
    });
}

#[test]
fn the_spool_runs_on_the_octo_spi_nor_at_the_maps_region_in_4_kib_sectors() {
    // The data flash as the map lays it out: the key-value store, then the spool.
    let flash = NorFlash::new(FLASH_MAP.data_bytes() as usize);
    let start = FLASH_MAP.key_value_sectors * FLASH_MAP.sector_size;
    round_trip::<_, NOR_SPOOL_SECTORS>(flash.clone(), start..FLASH_MAP.data_bytes());
    // The spool wrote nothing into the key-value store's sectors.
    assert!(flash.snapshot()[..start as usize].iter().all(|&byte| byte == 0xff));
}

#[test]
fn the_spool_runs_on_the_internal_flash_in_8_kib_sectors() {
    let bytes = INTERNAL_SPOOL_SECTORS * SECTOR_SIZE as usize;
    round_trip::<_, INTERNAL_SPOOL_SECTORS>(InternalFlash::new(bytes), 0..bytes as u32);
}

#[test]
fn the_key_store_runs_on_the_internal_flash_at_the_maps_region() {
    let flash = InternalFlash::new(FLASH_MAP.key_store_bytes() as usize);
    let region = 0..FLASH_MAP.key_store_bytes();
    let config = KeystoreConfig { iterations: 2 };
    let mut store = block_on(Keystore::mount(flash.clone(), region.clone(), TestRandom::new(1), config)).unwrap();
    let key = *block_on(store.initialise(b"passphrase", [0xa1; 32])).unwrap().expose_secret();
    drop(store);
    let mut store = block_on(Keystore::mount(flash, region, TestRandom::new(2), config)).unwrap();
    assert_eq!(store.state(), KeystoreState::Locked);
    assert_eq!(*block_on(store.unlock(b"passphrase", 0)).unwrap().expose_secret(), key);
}
