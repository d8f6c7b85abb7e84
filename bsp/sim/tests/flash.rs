//! The device's flash: NOR rules, power cuts that leave the interrupted operation untouched,
//! completed or torn, tears that one seed reproduces, the power rail shared with the
//! Ethernet port, counters since boot.

mod common;

use core::task::{Context, Waker};

use embassy_net_driver::{Driver, TxToken};
use embedded_storage_async::nor_flash::{NorFlash, ReadNorFlash};
use homemx_board::{FlashCounters, ResetCause};
use homemx_bsp_sim::ethernet::{FaultPlan, SimEthernet};
use homemx_bsp_sim::flash::{CutMode, SimFlash, SimulatedFlashError, SECTOR_SIZE};
use homemx_bsp_sim::{SimConfig, World, FLASH_MAP};
use homemx_spool::testing::block_on;

fn boot(seed: u64) -> (World, SimFlash) {
    let mut world = World::new(SimConfig::new(seed));
    let (parts, _handles) = world.boot(ResetCause::PowerOn);
    (world, parts.key_flash)
}

fn read(flash: &mut SimFlash, offset: u32, length: usize) -> Vec<u8> {
    let mut bytes = vec![0; length];
    block_on(flash.read(offset, &mut bytes)).unwrap();
    bytes
}

#[test]
fn nor_rules_are_enforced() {
    let (_world, mut flash) = boot(1);
    assert_eq!(flash.capacity(), FLASH_MAP.key_store_bytes() as usize);
    assert_eq!(read(&mut flash, 0, 8), [0xff; 8], "a fresh chip is erased");
    block_on(flash.write(0, &[0x0f, 0xf0, 0x00, 0xff])).unwrap();
    assert_eq!(read(&mut flash, 0, 4), [0x0f, 0xf0, 0x00, 0xff]);
    assert_eq!(block_on(flash.write(0, &[0xff; 4])), Err(SimulatedFlashError::WordProgrammedTwice), "no 1 over a 0");
    assert_eq!(block_on(flash.write(0, &[0x00; 4])), Err(SimulatedFlashError::WordProgrammedTwice), "one program per erase");
    assert_eq!(block_on(flash.write(2, &[0; 4])), Err(SimulatedFlashError::NotAligned));
    assert_eq!(block_on(flash.write(4, &[0; 3])), Err(SimulatedFlashError::NotAligned));
    assert_eq!(block_on(flash.erase(0, 100)), Err(SimulatedFlashError::NotAligned));
    let end = FLASH_MAP.key_store_bytes();
    assert_eq!(block_on(flash.write(end, &[0; 4])), Err(SimulatedFlashError::OutOfBounds));
    assert_eq!(block_on(flash.erase(end, end + SECTOR_SIZE as u32)), Err(SimulatedFlashError::OutOfBounds));
    let mut beyond = [0u8; 2];
    assert_eq!(block_on(flash.read(end - 1, &mut beyond)), Err(SimulatedFlashError::OutOfBounds));
    block_on(flash.erase(0, SECTOR_SIZE as u32)).unwrap();
    assert_eq!(read(&mut flash, 0, 4), [0xff; 4]);
    block_on(flash.write(0, &[1, 2, 3, 4])).unwrap();
    assert_eq!(read(&mut flash, 0, 4), [1, 2, 3, 4], "programmable again after the erase");
}

#[test]
fn the_key_flash_and_the_data_flash_are_disjoint_windows_of_the_one_chip() {
    let mut world = World::new(SimConfig::new(1));
    let (parts, _handles) = world.boot(ResetCause::PowerOn);
    let (mut key_flash, mut data_flash) = (parts.key_flash, parts.flash);
    let key_bytes = FLASH_MAP.key_store_bytes();
    assert_eq!(data_flash.capacity(), FLASH_MAP.data_bytes() as usize);
    block_on(key_flash.write(0, &[1; 4])).unwrap();
    block_on(data_flash.write(0, &[2; 4])).unwrap();
    block_on(data_flash.write(FLASH_MAP.data_bytes() - 4, &[3; 4])).unwrap();
    let image = world.flash().snapshot();
    assert_eq!(image.len(), (key_bytes + FLASH_MAP.data_bytes()) as usize);
    assert_eq!(image[..4], [1; 4]);
    assert_eq!(image[key_bytes as usize..key_bytes as usize + 4], [2; 4], "the data flash starts after the key store");
    assert_eq!(image[image.len() - 4..], [3; 4]);
    assert_eq!(block_on(key_flash.write(key_bytes, &[0; 4])), Err(SimulatedFlashError::OutOfBounds), "the key flash ends at the key store");
    assert_eq!(block_on(key_flash.erase(key_bytes, key_bytes + SECTOR_SIZE as u32)), Err(SimulatedFlashError::OutOfBounds));
    assert_eq!(block_on(data_flash.write(FLASH_MAP.data_bytes(), &[0; 4])), Err(SimulatedFlashError::OutOfBounds));
}

/// Writes a sector, arms a cut at the program of the next one, and returns the flash after
/// that program and its result.
fn cut_during_program(seed: u64, mode: CutMode) -> (World, SimFlash, Result<(), SimulatedFlashError>) {
    let (mut world, mut flash) = boot(seed);
    block_on(flash.write(0, &[0x55; 64])).unwrap();
    world.cut_flash_power_at(1, mode);
    let result = block_on(flash.write(64, &[0x00; 256]));
    (world, flash, result)
}

#[test]
fn a_clean_cut_leaves_the_operation_undone_and_everything_after_fails() {
    let (world, mut flash, result) = cut_during_program(1, CutMode::Clean);
    assert_eq!(result, Err(SimulatedFlashError::PowerCut));
    let mut bytes = [0u8; 4];
    assert_eq!(block_on(flash.read(0, &mut bytes)), Err(SimulatedFlashError::PowerCut));
    assert_eq!(block_on(flash.erase(0, SECTOR_SIZE as u32)), Err(SimulatedFlashError::PowerCut));
    let image = world.flash().snapshot();
    assert_eq!(image[..64], [0x55; 64]);
    assert!(image[64..320].iter().all(|&byte| byte == 0xff));
}

#[test]
fn a_completed_cut_does_the_operation_and_reports_success_then_the_power_is_gone() {
    let (world, mut flash, result) = cut_during_program(1, CutMode::Completed);
    assert_eq!(result, Ok(()));
    let mut bytes = [0u8; 4];
    assert_eq!(block_on(flash.read(0, &mut bytes)), Err(SimulatedFlashError::PowerCut));
    assert!(world.flash().snapshot()[64..320].iter().all(|&byte| byte == 0x00));
}

#[test]
fn a_torn_program_is_half_done_and_one_seed_tears_the_same_bits() {
    let torn = |seed| {
        let (world, _flash, result) = cut_during_program(seed, CutMode::Torn);
        assert_eq!(result, Err(SimulatedFlashError::PowerCut));
        world.flash().snapshot()[64..320].to_vec()
    };
    let first = torn(11);
    assert!(first.iter().any(|&byte| byte != 0x00), "not completed");
    assert!(first.iter().any(|&byte| byte != 0xff), "not untouched");
    assert_eq!(first, torn(11), "the same seed tears the same bits");
    assert_ne!(first, torn(12), "another seed tears others");
}

#[test]
fn a_torn_erase_leaves_bits_of_the_old_contents() {
    let tear = |seed| {
        let (mut world, mut flash) = boot(seed);
        block_on(flash.write(0, &[0x00; SECTOR_SIZE])).unwrap();
        world.cut_flash_power_at(1, CutMode::Torn);
        assert_eq!(block_on(flash.erase(0, SECTOR_SIZE as u32)), Err(SimulatedFlashError::PowerCut));
        world.flash().snapshot()[..SECTOR_SIZE].to_vec()
    };
    let sector = tear(5);
    assert!(sector.iter().any(|&byte| byte != 0xff) && sector.iter().any(|&byte| byte != 0x00));
    assert_eq!(sector, tear(5));
}

#[test]
fn the_next_boot_has_power_and_counts_from_zero_and_the_old_boot_stays_dead() {
    let (mut world, mut old_flash, _) = cut_during_program(1, CutMode::Completed);
    assert!(old_flash.statistics().bytes_programmed > 0);
    let (parts, _handles) = world.boot(ResetCause::PowerOn);
    let mut flash = parts.key_flash;
    assert_eq!(flash.statistics(), Default::default());
    assert_eq!(read(&mut flash, 64, 4), [0; 4]);
    assert_eq!(flash.statistics().bytes_read, 4);
    let mut bytes = [0u8; 4];
    assert_eq!(block_on(old_flash.read(0, &mut bytes)), Err(SimulatedFlashError::PowerCut), "the old boot's parts stay off");
}

/// Sends one broadcast frame through `driver`.
fn broadcast(driver: &mut SimEthernet) {
    let mut context = Context::from_waker(Waker::noop());
    let token = driver.transmit(&mut context).expect("the segment takes every frame");
    token.consume(60, |frame| {
        frame[..6].fill(0xff);
        frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    });
}

/// Whether `driver` has a frame waiting.
fn has_frame(driver: &mut SimEthernet) -> bool {
    let mut context = Context::from_waker(Waker::noop());
    driver.receive(&mut context).is_some()
}

#[test]
fn a_power_cut_silences_the_device_port_too() {
    let mut world = World::new(SimConfig { faults: FaultPlan::NONE, ..SimConfig::new(9) });
    let mut peer = world.segment().attach([2, 0, 0, 0, 0, 2]);
    let (parts, handles) = world.boot(ResetCause::PowerOn);
    let (mut flash, mut device) = (parts.key_flash, parts.network);
    broadcast(&mut device);
    assert!(has_frame(&mut peer), "a powered device is heard");
    world.cut_flash_power_at(1, CutMode::Clean);
    assert!(handles.power.is_on(), "armed, not struck");
    assert!(block_on(flash.erase(0, SECTOR_SIZE as u32)).is_err());
    assert!(!handles.power.is_on());
    broadcast(&mut device);
    broadcast(&mut peer);
    assert!(!has_frame(&mut peer), "a device without power sends nothing");
    assert!(!has_frame(&mut device), "and receives nothing");
    assert_eq!(world.segment().statistics().lost_offline, 2);
    world.flash().restore_power();
    assert!(!handles.power.is_on(), "a boot's power stays off once seen off");
}

#[test]
fn a_world_starts_from_another_runs_image() {
    let (world, mut flash) = boot(1);
    block_on(flash.write(4096, b"kept")).unwrap();
    let copy = World::with_flash_image(SimConfig::new(2), &world.flash().snapshot());
    assert_eq!(copy.flash().snapshot(), world.flash().snapshot());
}
