//! The provisioning console of the STM32H573I-DK: a USB CDC-ACM serial port on the kit's USB
//! Type-C connector (the STM32H573's USB device FS peripheral), as async `embedded-io`
//! (embassy-usb's CDC-ACM class).
//!
//! Pins: PA11 (D−), PA12 (D+). The USB device FS peripheral has no VBUS sensing input: it is
//! "connected" once a host configures it (see below). The Type-C CC lines go to UCPD1, whose
//! dead-battery pull-downs (Rd) are left on (`crate::init`), so the port presents itself as a
//! sink and a Type-C host turns VBUS on.
//! A spawned task ([`usb_device_task`]) runs the USB device stack; the application reads and
//! writes through [`UsbConsole`].
//!
//! The console behaves like a UART that has a cable only while a host is listening:
//!
//! - "connected" means the device is configured by a host, the bus is not suspended, and the
//!   host program has the port open: it asserts DTR (Linux does so when a program opens
//!   `/dev/ttyACM*`; on other systems the host CLI sets DTR itself).
//! - `read` waits until connected and then for data; a disconnect while waiting is not an
//!   error, it just keeps waiting for the next host. It never returns zero bytes. A caller's
//!   buffer of a whole packet (64 bytes) gets the packet directly; otherwise the rest of the
//!   packet waits here and is wiped once read (it may hold a passphrase). The peripheral's
//!   own packet memory (2 KB inside the USB block, not SRAM) still keeps the last packet
//!   received until the host sends the next one.
//! - `write` delivers at most one 64-byte packet per call when connected. When nobody is
//!   connected, or the host stops taking packets for [`WRITE_TIMEOUT`], the bytes are dropped
//!   and reported as written: output is never held back for a later, possibly different, host,
//!   and the application never blocks on an absent one.

use core::convert::Infallible;
use core::sync::atomic::{AtomicBool, Ordering};

use embassy_executor::{SpawnError, Spawner};
use embassy_futures::select::select;
use embassy_stm32::peripherals::{PA11, PA12, USB};
use embassy_stm32::usb::Driver;
use embassy_stm32::Peri;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use embassy_time::{with_timeout, Duration};
use embassy_usb::class::cdc_acm::{CdcAcmClass, ControlChanged, Receiver, Sender, State};
use embassy_usb::{Builder, Handler, UsbDevice};
use static_cell::StaticCell;
use zeroize::Zeroize;

use crate::interrupts::Interrupts;

/// The USB device FS driver type.
pub type UsbDriver = Driver<'static, USB>;

/// USB vendor ID: pid.codes' open-source vendor ID.
pub const USB_VENDOR_ID: u16 = 0x1209;
/// USB product ID: pid.codes' test product ID, for development only. A distributed device
/// needs a product ID of its own.
pub const USB_PRODUCT_ID: u16 = 0x0001;
/// Manufacturer string of the USB device descriptor.
pub const USB_MANUFACTURER: &str = "homemx";
/// Product string of the USB device descriptor; the host CLI finds the console by it.
pub const USB_PRODUCT: &str = "homemx provisioning console";
/// Full-speed bulk packet size.
pub const PACKET_SIZE: usize = 64;
/// How long a write waits for the host to take one packet before the bytes are dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_millis(500);

/// The pins and peripheral of the user USB connector.
pub struct UsbPins {
    /// The USB device FS peripheral.
    pub peripheral: Peri<'static, USB>,
    /// D+.
    pub data_plus: Peri<'static, PA12>,
    /// D−.
    pub data_minus: Peri<'static, PA11>,
}

/// Whether a host has configured the device and the bus is awake; kept by [`BusWatcher`].
static CONFIGURED: AtomicBool = AtomicBool::new(false);
/// Whether the bus is suspended (cable unplugged without VBUS news, or host asleep).
static SUSPENDED: AtomicBool = AtomicBool::new(false);
/// Raised whenever [`CONFIGURED`] or [`SUSPENDED`] changes.
static BUS_CHANGED: Signal<CriticalSectionRawMutex, ()> = Signal::new();

/// Records the device-level USB state for the console's idea of "connected".
struct BusWatcher;

impl Handler for BusWatcher {
    fn enabled(&mut self, enabled: bool) {
        if !enabled {
            CONFIGURED.store(false, Ordering::Relaxed);
            BUS_CHANGED.signal(());
        }
    }

    fn reset(&mut self) {
        CONFIGURED.store(false, Ordering::Relaxed);
        SUSPENDED.store(false, Ordering::Relaxed);
        BUS_CHANGED.signal(());
    }

    fn configured(&mut self, configured: bool) {
        CONFIGURED.store(configured, Ordering::Relaxed);
        BUS_CHANGED.signal(());
    }

    fn suspended(&mut self, suspended: bool) {
        SUSPENDED.store(suspended, Ordering::Relaxed);
        BUS_CHANGED.signal(());
    }
}

/// The console's serial link (`embedded_io_async::Read + Write`).
pub struct UsbConsole {
    sender: Sender<'static, UsbDriver>,
    receiver: Receiver<'static, UsbDriver>,
    /// The last packet received, while the reader has not taken all of it; wiped (it may
    /// hold a passphrase) as soon as it has been.
    packet: [u8; PACKET_SIZE],
    /// The part of `packet` not yet read.
    pending: core::ops::Range<usize>,
    control: ControlChanged<'static>,
    last_packet_was_full: bool,
}

impl UsbConsole {
    /// Whether a host program has the port open right now.
    pub fn is_connected(&self) -> bool {
        CONFIGURED.load(Ordering::Relaxed) && !SUSPENDED.load(Ordering::Relaxed) && self.control.dtr()
    }

    async fn wait_until_connected(&mut self) {
        while !self.is_connected() {
            select(self.control.control_changed(), BUS_CHANGED.wait()).await;
        }
    }
}

impl embedded_io_async::ErrorType for UsbConsole {
    type Error = Infallible;
}

impl embedded_io_async::Read for UsbConsole {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Self::Error> {
        if buffer.is_empty() {
            return Ok(0);
        }
        if self.pending.is_empty() {
            loop {
                self.wait_until_connected().await;
                // A buffer that holds a whole packet takes it directly: no copy stays here.
                let target = if buffer.len() >= PACKET_SIZE { &mut buffer[..] } else { &mut self.packet[..] };
                match self.receiver.read_packet(target).await {
                    Ok(0) => continue,
                    Ok(length) if buffer.len() >= PACKET_SIZE => return Ok(length),
                    Ok(length) => {
                        self.pending = 0..length;
                        break;
                    }
                    // The host went away: wait for the next one. The endpoint can report itself
                    // disabled before the bus events clear "connected": pause rather than spin
                    // (one executor runs every task).
                    Err(_) => embassy_time::Timer::after_millis(10).await,
                }
            }
        }
        let length = buffer.len().min(self.pending.len());
        let start = self.pending.start;
        buffer[..length].copy_from_slice(&self.packet[start..start + length]);
        self.pending.start += length;
        if self.pending.is_empty() {
            self.packet.zeroize();
        }
        Ok(length)
    }
}

impl embedded_io_async::Write for UsbConsole {
    async fn write(&mut self, buffer: &[u8]) -> Result<usize, Self::Error> {
        if buffer.is_empty() {
            return Ok(0);
        }
        let length = buffer.len().min(PACKET_SIZE);
        if self.is_connected() {
            match with_timeout(WRITE_TIMEOUT, self.sender.write_packet(&buffer[..length])).await {
                Ok(Ok(())) => self.last_packet_was_full = length == PACKET_SIZE,
                Ok(Err(_)) | Err(_) => {
                    defmt::debug!("USB console: host not taking data, {=usize} bytes dropped", length);
                    self.last_packet_was_full = false;
                }
            }
        }
        Ok(length)
    }

    /// Ends a transfer whose last packet was full with a zero-length packet, so that hosts
    /// that read more than one packet at a time hand the data to the program now.
    async fn flush(&mut self) -> Result<(), Self::Error> {
        if self.last_packet_was_full && self.is_connected() {
            let _ = with_timeout(WRITE_TIMEOUT, self.sender.write_packet(&[])).await;
        }
        self.last_packet_was_full = false;
        Ok(())
    }
}

/// Runs the USB device: enumeration, control requests, suspend and resume. Never returns.
#[embassy_executor::task]
pub async fn usb_device_task(mut device: UsbDevice<'static, UsbDriver>) -> ! {
    device.run().await
}

/// Why the console could not start.
#[derive(Debug, defmt::Format)]
pub enum ConsoleError {
    /// The USB device task could not be spawned (the executor has no room for it).
    Spawn,
}

impl From<SpawnError> for ConsoleError {
    fn from(_: SpawnError) -> Self {
        Self::Spawn
    }
}

/// Starts the USB device with one CDC-ACM function, spawns [`usb_device_task`] and returns
/// the console. `serial_number` is the chip's unique ID, so that a host can tell two boards
/// apart. Call once: the descriptors and endpoint buffers live in statics.
pub fn start(spawner: Spawner, pins: UsbPins, serial_number: &'static str) -> Result<UsbConsole, ConsoleError> {
    static CONFIGURATION_DESCRIPTOR: StaticCell<[u8; 256]> = StaticCell::new();
    static BINARY_OBJECT_STORE_DESCRIPTOR: StaticCell<[u8; 256]> = StaticCell::new();
    static CONTROL_BUFFER: StaticCell<[u8; 64]> = StaticCell::new();
    static CLASS_STATE: StaticCell<State<'static>> = StaticCell::new();
    static BUS_WATCHER: StaticCell<BusWatcher> = StaticCell::new();

    let driver = Driver::new(pins.peripheral, Interrupts, pins.data_plus, pins.data_minus);

    let mut device_config = embassy_usb::Config::new(USB_VENDOR_ID, USB_PRODUCT_ID);
    device_config.manufacturer = Some(USB_MANUFACTURER);
    device_config.product = Some(USB_PRODUCT);
    device_config.serial_number = Some(serial_number);
    device_config.max_power = 100;
    device_config.max_packet_size_0 = 64;

    let mut builder = Builder::new(
        driver,
        device_config,
        CONFIGURATION_DESCRIPTOR.init([0; 256]),
        BINARY_OBJECT_STORE_DESCRIPTOR.init([0; 256]),
        &mut [],
        CONTROL_BUFFER.init([0; 64]),
    );
    builder.handler(BUS_WATCHER.init(BusWatcher));
    let class = CdcAcmClass::new(&mut builder, CLASS_STATE.init(State::new()), PACKET_SIZE as u16);
    let device = builder.build();
    spawner.spawn(usb_device_task(device)?);

    let (sender, receiver, control) = class.split_with_control();
    Ok(UsbConsole {
        sender,
        receiver,
        packet: [0; PACKET_SIZE],
        pending: 0..0,
        control,
        last_packet_was_full: false,
    })
}
