//! The provisioning console: an in-memory duplex byte pipe between the device and the
//! simulator (who plays the owner's host CLI).
//!
//! [`crate::World::boot`] makes both ends for each boot. Each direction holds at most `capacity` bytes: a writer waits
//! while the other side has not read (flow control, as a UART with a full host buffer stalls
//! nothing but its writer), a reader waits for at least one byte. Both ends are
//! `embedded-io-async` `Read + Write`; the simulator's end also has plain functions for a
//! loop's hook ([`HostSerial::push`], [`HostSerial::take_output`]). When the boot's power is
//! off the device end drops what it writes and its reads never complete.
//!
//! Owns the two byte queues. Calls: the wakers of the tasks waiting on them.

use core::convert::Infallible;
use core::future::poll_fn;
use core::task::{Poll, Waker};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use crate::power::DevicePower;

#[derive(Default)]
struct Direction {
    bytes: VecDeque<u8>,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

impl Direction {
    /// Moves up to `space` bytes of `data` in; returns how many.
    fn push(&mut self, data: &[u8], capacity: usize) -> usize {
        let count = data.len().min(capacity - self.bytes.len());
        self.bytes.extend(&data[..count]);
        if count > 0 {
            if let Some(reader) = self.reader.take() {
                reader.wake();
            }
        }
        count
    }

    /// Moves up to `buffer.len()` bytes out; returns how many.
    fn pop(&mut self, buffer: &mut [u8]) -> usize {
        let count = buffer.len().min(self.bytes.len());
        for (slot, byte) in buffer.iter_mut().zip(self.bytes.drain(..count)) {
            *slot = byte;
        }
        if count > 0 {
            if let Some(writer) = self.writer.take() {
                writer.wake();
            }
        }
        count
    }
}

struct Pipe {
    capacity: usize,
    to_device: Direction,
    to_host: Direction,
}

type SharedPipe = Rc<RefCell<Pipe>>;

/// The device's end of the console.
pub struct SimSerial {
    pipe: SharedPipe,
    power: DevicePower,
}

/// The simulator's end of the console.
pub struct HostSerial {
    pipe: SharedPipe,
}

/// A console pipe holding up to `capacity` bytes in each direction.
pub(crate) fn pipe(capacity: usize, power: DevicePower) -> (SimSerial, HostSerial) {
    assert!(capacity > 0, "a console pipe needs room for a byte");
    let pipe = Rc::new(RefCell::new(Pipe { capacity, to_device: Direction::default(), to_host: Direction::default() }));
    (SimSerial { pipe: pipe.clone(), power }, HostSerial { pipe })
}

fn pick(pipe: &mut Pipe, to_host: bool) -> (&mut Direction, usize) {
    let capacity = pipe.capacity;
    (if to_host { &mut pipe.to_host } else { &mut pipe.to_device }, capacity)
}

async fn read_from(pipe: &SharedPipe, to_host: bool, buffer: &mut [u8]) -> usize {
    if buffer.is_empty() {
        return 0;
    }
    poll_fn(|context| {
        let mut pipe = pipe.borrow_mut();
        let (direction, _) = pick(&mut pipe, to_host);
        match direction.pop(buffer) {
            0 => {
                direction.reader = Some(context.waker().clone());
                Poll::Pending
            }
            count => Poll::Ready(count),
        }
    })
    .await
}

async fn write_to(pipe: &SharedPipe, to_host: bool, data: &[u8]) -> usize {
    if data.is_empty() {
        return 0;
    }
    poll_fn(|context| {
        let mut pipe = pipe.borrow_mut();
        let (direction, capacity) = pick(&mut pipe, to_host);
        match direction.push(data, capacity) {
            0 => {
                direction.writer = Some(context.waker().clone());
                Poll::Pending
            }
            count => Poll::Ready(count),
        }
    })
    .await
}

impl embedded_io::ErrorType for SimSerial {
    type Error = Infallible;
}

impl embedded_io_async::Read for SimSerial {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Infallible> {
        if !self.power.is_on() {
            return core::future::pending().await;
        }
        Ok(read_from(&self.pipe, false, buffer).await)
    }
}

impl embedded_io_async::Write for SimSerial {
    async fn write(&mut self, data: &[u8]) -> Result<usize, Infallible> {
        if !self.power.is_on() {
            return Ok(data.len());
        }
        Ok(write_to(&self.pipe, true, data).await)
    }

    /// The bytes are in the pipe: nothing more to wait for.
    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl embedded_io::ErrorType for HostSerial {
    type Error = Infallible;
}

impl embedded_io_async::Read for HostSerial {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Infallible> {
        Ok(read_from(&self.pipe, true, buffer).await)
    }
}

impl embedded_io_async::Write for HostSerial {
    async fn write(&mut self, data: &[u8]) -> Result<usize, Infallible> {
        Ok(write_to(&self.pipe, false, data).await)
    }

    /// The bytes are in the pipe: nothing more to wait for.
    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl HostSerial {
    /// Types `data` into the device's input without waiting; returns how many bytes fit.
    pub fn push(&self, data: &[u8]) -> usize {
        let mut pipe = self.pipe.borrow_mut();
        let (direction, capacity) = pick(&mut pipe, false);
        direction.push(data, capacity)
    }

    /// Everything the device has written and the simulator has not read yet.
    pub fn take_output(&self) -> Vec<u8> {
        let mut pipe = self.pipe.borrow_mut();
        let (direction, _) = pick(&mut pipe, true);
        let mut bytes = vec![0; direction.bytes.len()];
        direction.pop(&mut bytes);
        bytes
    }
}
