//! A device's life across a power cut: its first boot is cut at a flash program, the
//! simulator sees the power go, halts the boot's executor and boots again on a fresh one,
//! which finds on flash what the first boot completed, while a peer on the segment lives on.

mod common;

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::rc::Rc;

use common::on_own_thread;
use embassy_time::{Duration, Timer};
use embedded_storage_async::nor_flash::{NorFlash, ReadNorFlash};
use homemx_board::ResetCause;
use homemx_bsp_sim::executor::{run, Limits, RunOutcome, SimExecutor, Step};
use homemx_bsp_sim::flash::CutMode;
use homemx_bsp_sim::{install, time_driver, Parts, SimConfig, World};

/// The device's "firmware": finds the first erased word, reports it, then programs ten more
/// words, one every 100 ms, until the flash fails.
async fn firmware(parts: Parts, boot: u32, found: Rc<RefCell<Vec<(u32, u32)>>>) {
    let mut flash = parts.flash;
    let mut word = [0u8; 4];
    let mut index = 0;
    loop {
        flash.read(index * 4, &mut word).await.unwrap();
        if word == [0xff; 4] {
            break;
        }
        index += 1;
    }
    found.borrow_mut().push((boot, index));
    for next in index..index + 10 {
        Timer::after(Duration::from_millis(100)).await;
        if flash.write(next * 4, &next.to_le_bytes()).await.is_err() {
            return;
        }
    }
}

#[test]
fn after_a_power_cut_the_next_boot_finds_what_the_first_completed() {
    on_own_thread(|| {
        let mut world = World::new(SimConfig::new(21));
        let found: Rc<RefCell<Vec<(u32, u32)>>> = Rc::default();

        let (parts, handles) = world.boot(ResetCause::PowerOn);
        world.cut_flash_power_at(4, CutMode::Completed);
        let first = SimExecutor::new();
        install(parts);
        let parts = homemx_bsp_sim::init(first.spawner()).unwrap();
        first.spawn(firmware(parts, handles.boot, found.clone()));
        let outcome = run(&[first], Limits { max_steps: 1_000, deadline: None }, |step| {
            if !handles.power.is_on() {
                first.halt();
                return ControlFlow::Break(time_driver::now());
            }
            assert!(!matches!(step, Step::Reset { .. }));
            ControlFlow::Continue(())
        });
        assert_eq!(outcome, RunOutcome::Stopped(400), "the fourth program, at 400 ms, was the last");

        let (parts, handles) = world.boot(ResetCause::PowerOn);
        let second = SimExecutor::new();
        second.spawn(firmware(parts, handles.boot, found.clone()));
        let outcome = run(&[first, second], Limits { max_steps: 1_000, deadline: None }, |_| ControlFlow::<()>::Continue(()));
        assert_eq!(outcome, RunOutcome::Quiescent);
        assert!(handles.power.is_on());
        assert_eq!(*found.borrow(), [(1, 0), (2, 4)], "the second boot found the four words the first completed");
        assert_eq!(world.boots(), 2);
    })
}
