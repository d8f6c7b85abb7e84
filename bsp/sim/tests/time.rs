//! The simulated clock and the executor loop: timers complete only when the simulator moves
//! the clock; a walk fires each timer at its own instant, a jump fires them together; resets
//! halt their executor and nothing else; loops are bounded.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use common::on_own_thread;
use embassy_time::{Duration, Instant, Timer};
use homemx_board::ResetControl;
use homemx_bsp_sim::executor::{self, run_until_quiescent, Interruption, PollOutcome, SimExecutor, Step};
use homemx_bsp_sim::reset::DeviceReset;
use homemx_bsp_sim::{core_clock_counts, time_driver, SimConfig, World, CORE_CLOCK_HZ};

#[test]
fn a_five_second_timer_completes_only_when_the_simulator_advances_the_clock() {
    on_own_thread(|| {
        let executor = SimExecutor::new();
        let done_at: Rc<Cell<Option<u64>>> = Rc::default();
        let record = done_at.clone();
        executor.spawn(async move {
            Timer::after(Duration::from_secs(5)).await;
            record.set(Some(Instant::now().as_millis()));
        });
        assert_eq!(run_until_quiescent(&[executor], 10), Ok(1));
        assert_eq!(time_driver::now(), 0);
        assert_eq!(time_driver::next_alarm(), Some(5_000));
        assert!(!time_driver::alarm_due());
        for _ in 0..100 {
            assert_eq!(run_until_quiescent(&[executor], 10), Ok(0), "nothing runs while the clock stands");
        }
        assert_eq!(done_at.get(), None);

        executor::advance(&[executor], 4_999, 100).unwrap();
        assert_eq!((time_driver::now(), done_at.get()), (4_999, None));
        executor::advance(&[executor], 1, 100).unwrap();
        assert_eq!(done_at.get(), Some(5_000));
        assert_eq!(time_driver::next_alarm(), None);
        assert_eq!(core_clock_counts(), 5 * CORE_CLOCK_HZ as u64);
    })
}

/// A task that wakes every second and records when.
fn ticker(executor: SimExecutor) -> Rc<RefCell<Vec<u64>>> {
    let ticks: Rc<RefCell<Vec<u64>>> = Rc::default();
    let record = ticks.clone();
    executor.spawn(async move {
        loop {
            Timer::after(Duration::from_secs(1)).await;
            record.borrow_mut().push(Instant::now().as_millis());
        }
    });
    run_until_quiescent(&[executor], 10).unwrap();
    ticks
}

#[test]
fn a_walk_fires_each_timer_at_its_instant_and_a_jump_fires_the_gap_at_once() {
    on_own_thread(|| {
        let executor = SimExecutor::new();
        let ticks = ticker(executor);
        executor::advance(&[executor], 3_500, 100).unwrap();
        assert_eq!(*ticks.borrow(), [1_000, 2_000, 3_000]);
        assert_eq!(time_driver::now(), 3_500);

        assert_eq!(time_driver::jump(10_000), 13_500);
        run_until_quiescent(&[executor], 10).unwrap();
        assert_eq!(*ticks.borrow(), [1_000, 2_000, 3_000, 13_500], "the timer due at 4 000 fires once, at 13 500");
        assert_eq!(time_driver::next_alarm(), Some(14_500));

        assert_eq!(time_driver::advance_to_next_alarm(), Some(14_500));
        run_until_quiescent(&[executor], 10).unwrap();
        assert_eq!(ticks.borrow().last(), Some(&14_500));
        assert_eq!(time_driver::advance_to(1_000), 14_500, "time never goes back");
    })
}

#[test]
fn a_step_polls_first_then_moves_the_clock_to_the_next_timer_or_the_deadline() {
    on_own_thread(|| {
        let executor = SimExecutor::new();
        let ticks = ticker(executor);
        assert_eq!(executor::step(&[executor], Some(500)), Step::ClockMoved { now: 500 });
        assert_eq!(executor::step(&[executor], Some(500)), Step::Quiescent);
        assert_eq!(executor::step(&[executor], None), Step::ClockMoved { now: 1_000 });
        assert!(executor.is_pended());
        assert_eq!(executor::step(&[executor], None), Step::Polled);
        assert_eq!(*ticks.borrow(), [1_000]);
    })
}

#[test]
fn a_device_reset_halts_its_executor_and_the_other_runs_on() {
    on_own_thread(|| {
        let mut world = World::new(SimConfig::new(5));
        let (parts, handles) = world.boot(homemx_board::ResetCause::PowerOn);
        let device = SimExecutor::new();
        let peers = SimExecutor::new();
        let peer_ticks = ticker(peers);
        device.spawn(async move {
            Timer::after(Duration::from_millis(1_500)).await;
            parts.reset.reset();
        });
        let stop = executor::advance(&[device, peers], 10_000, 1_000);
        assert_eq!(stop, Err(Interruption::Reset { executor: 0, reset: DeviceReset { boot: handles.boot } }));
        assert!(device.is_halted());
        assert_eq!(device.poll(), PollOutcome::Halted);
        assert_eq!(time_driver::now(), 1_500);
        executor::advance(&[device, peers], 2_000, 1_000).unwrap();
        assert_eq!(*peer_ticks.borrow(), [1_000, 2_000, 3_000]);
    })
}

#[test]
fn other_panics_propagate() {
    let result = std::thread::spawn(|| {
        let executor = SimExecutor::new();
        executor.spawn(async { panic!("a real bug") });
        executor.poll()
    })
    .join();
    let payload = result.expect_err("the panic reaches the caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"a real bug"));
}

#[test]
fn loops_are_bounded() {
    on_own_thread(|| {
        let executor = SimExecutor::new();
        executor.spawn(async {
            loop {
                embassy_futures::yield_now().await;
            }
        });
        assert_eq!(run_until_quiescent(&[executor], 50), Err(Interruption::StepLimit));
        assert_eq!(executor::advance(&[executor], 10, 50), Err(Interruption::StepLimit));
    })
}
