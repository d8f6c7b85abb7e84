//! The console pipe: bytes cross both ways in order, a full direction stalls its writer until
//! the other side reads, and a boot without power says nothing more.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::{on_own_thread, pattern};
use embedded_io_async::{Read, Write};
use homemx_board::ResetCause;
use homemx_bsp_sim::executor::{run_until_quiescent, SimExecutor};
use homemx_bsp_sim::{SimConfig, World};

const CAPACITY: usize = 16;

#[test]
fn bytes_cross_both_ways_in_order_and_a_full_pipe_stalls_the_writer() {
    on_own_thread(|| {
        let mut world = World::new(SimConfig { console_capacity: CAPACITY, ..SimConfig::new(1) });
        let (parts, handles) = world.boot(ResetCause::PowerOn);
        let executor = SimExecutor::new();
        // The device echoes what it reads, upper-cased, in pieces of 7.
        let mut device = parts.serial;
        executor.spawn(async move {
            let mut buffer = [0u8; 7];
            loop {
                let count = device.read(&mut buffer).await.unwrap();
                buffer[..count].make_ascii_uppercase();
                device.write_all(&buffer[..count]).await.unwrap();
            }
        });

        let message: Vec<u8> = pattern(1_000, 3).iter().map(|byte| b'a' + byte % 26).collect();
        let (mut typed, mut echoed) = (0, Vec::new());
        let mut stalled = 0;
        for _ in 0..10_000 {
            if echoed.len() == message.len() {
                break;
            }
            let pushed = handles.console.push(&message[typed..]);
            assert!(pushed <= CAPACITY);
            typed += pushed;
            run_until_quiescent(&[executor], 1_000).unwrap();
            let output = handles.console.take_output();
            assert!(output.len() <= CAPACITY, "the pipe held {} bytes", output.len());
            if output.len() == CAPACITY {
                stalled += 1; // the device waited for the host to read
            }
            echoed.extend_from_slice(&output);
        }
        assert_eq!(echoed, message.to_ascii_uppercase());
        assert!(stalled > 0, "the device never had to wait");
    })
}

#[test]
fn both_ends_are_async_streams() {
    on_own_thread(|| {
        let mut world = World::new(SimConfig::new(2));
        let (parts, handles) = world.boot(ResetCause::PowerOn);
        let executor = SimExecutor::new();
        let mut device = parts.serial;
        let mut host = handles.console;
        let heard: Rc<RefCell<Vec<u8>>> = Rc::default();
        let record = heard.clone();
        executor.spawn(async move {
            device.write_all(b"ready\n").await.unwrap();
            let mut buffer = [0u8; 4];
            device.read_exact(&mut buffer).await.unwrap();
            device.write_all(&buffer).await.unwrap();
        });
        executor.spawn(async move {
            let mut line = [0u8; 6];
            host.read_exact(&mut line).await.unwrap();
            record.borrow_mut().extend_from_slice(&line);
            host.write_all(b"ping").await.unwrap();
            let mut answer = [0u8; 4];
            host.read_exact(&mut answer).await.unwrap();
            record.borrow_mut().extend_from_slice(&answer);
        });
        run_until_quiescent(&[executor], 1_000).unwrap();
        assert_eq!(heard.borrow().as_slice(), b"ready\nping");
    })
}

#[test]
fn a_boot_without_power_says_nothing() {
    on_own_thread(|| {
        let mut world = World::new(SimConfig::new(3));
        let (parts, handles) = world.boot(ResetCause::PowerOn);
        let executor = SimExecutor::new();
        let mut device = parts.serial;
        let power = handles.power.clone();
        executor.spawn(async move {
            device.write_all(b"before").await.unwrap();
            power.switch_off();
            device.write_all(b"after").await.unwrap();
        });
        run_until_quiescent(&[executor], 100).unwrap();
        assert_eq!(handles.console.take_output(), b"before");
    })
}
