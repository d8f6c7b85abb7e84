//! CMSDK APB UART0 (QEMU's `-serial`) as an async byte stream: the provisioning console.
//!
//! Receive and transmit are interrupt driven: the UART raises IRQ 0 when a byte arrived and
//! IRQ 1 when its transmit holding register emptied; the handler acknowledges and wakes the
//! waiting task. The real board's USB CDC-ACM implements the same traits.

use core::convert::Infallible;
use core::future::poll_fn;
use core::task::Poll;

use embassy_sync::waitqueue::AtomicWaker;

use crate::registers::RegisterBlock;

const REGISTERS: RegisterBlock = RegisterBlock::at(0x4000_4000);
const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CONTROL: usize = 0x08;
const INTERRUPT_STATUS: usize = 0x0c;
const BAUD_DIVIDER: usize = 0x10;

const STATE_TRANSMIT_FULL: u32 = 1 << 0;
const STATE_RECEIVE_FULL: u32 = 1 << 1;
const CONTROL_TRANSMIT_ENABLE: u32 = 1 << 0;
const CONTROL_RECEIVE_ENABLE: u32 = 1 << 1;
const CONTROL_TRANSMIT_INTERRUPT: u32 = 1 << 2;
const CONTROL_RECEIVE_INTERRUPT: u32 = 1 << 3;
const INTERRUPT_TRANSMIT: u32 = 1 << 0;
const INTERRUPT_RECEIVE: u32 = 1 << 1;

/// 25 MHz / 115 200 baud.
const BAUD_DIVIDER_115200: u32 = 217;

static RECEIVE_WAKER: AtomicWaker = AtomicWaker::new();
static TRANSMIT_WAKER: AtomicWaker = AtomicWaker::new();

fn read(offset: usize) -> u32 {
    REGISTERS.read(offset)
}

fn write(offset: usize, value: u32) {
    REGISTERS.write(offset, value)
}

/// Acknowledges UART0's receive/transmit interrupts and wakes the waiting tasks.
pub(crate) fn on_interrupt() {
    let status = read(INTERRUPT_STATUS);
    write(INTERRUPT_STATUS, status);
    if status & INTERRUPT_RECEIVE != 0 {
        RECEIVE_WAKER.wake();
    }
    if status & INTERRUPT_TRANSMIT != 0 {
        TRANSMIT_WAKER.wake();
    }
}

/// UART0 of mps2-an386, 8N1, interrupt driven.
pub struct CmsdkUart {
    _owned: (),
}

impl CmsdkUart {
    pub(crate) fn new() -> Self {
        write(BAUD_DIVIDER, BAUD_DIVIDER_115200);
        write(INTERRUPT_STATUS, INTERRUPT_RECEIVE | INTERRUPT_TRANSMIT);
        write(
            CONTROL,
            CONTROL_TRANSMIT_ENABLE
                | CONTROL_RECEIVE_ENABLE
                | CONTROL_TRANSMIT_INTERRUPT
                | CONTROL_RECEIVE_INTERRUPT,
        );
        Self { _owned: () }
    }

    fn take_received(buffer: &mut [u8]) -> usize {
        let mut count = 0;
        while count < buffer.len() && read(STATE) & STATE_RECEIVE_FULL != 0 {
            buffer[count] = read(DATA) as u8;
            count += 1;
        }
        count
    }

    fn put_transmitted(bytes: &[u8]) -> usize {
        let mut count = 0;
        while count < bytes.len() && read(STATE) & STATE_TRANSMIT_FULL == 0 {
            write(DATA, bytes[count] as u32);
            count += 1;
        }
        count
    }
}

impl embedded_io_async::ErrorType for CmsdkUart {
    type Error = Infallible;
}

impl embedded_io_async::Read for CmsdkUart {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Infallible> {
        if buffer.is_empty() {
            return Ok(0);
        }
        poll_fn(|cx| {
            RECEIVE_WAKER.register(cx.waker());
            match Self::take_received(buffer) {
                0 => Poll::Pending,
                count => Poll::Ready(Ok(count)),
            }
        })
        .await
    }
}

impl embedded_io_async::Write for CmsdkUart {
    async fn write(&mut self, bytes: &[u8]) -> Result<usize, Infallible> {
        if bytes.is_empty() {
            return Ok(0);
        }
        poll_fn(|cx| {
            TRANSMIT_WAKER.register(cx.waker());
            match Self::put_transmitted(bytes) {
                0 => Poll::Pending,
                count => Poll::Ready(Ok(count)),
            }
        })
        .await
    }

    async fn flush(&mut self) -> Result<(), Infallible> {
        poll_fn(|cx| {
            TRANSMIT_WAKER.register(cx.waker());
            if read(STATE) & STATE_TRANSMIT_FULL == 0 {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        })
        .await
    }
}
