//! The board abstraction: the small set of things every homemx board gives the application.
//!
//! A board is a network driver ([`embassy_net_driver::Driver`]), a persistent NOR flash
//! ([`embedded_storage_async::nor_flash::NorFlash`] plus [`FlashCounters`]), a serial link
//! for the provisioning console ([`SerialLink`]), an entropy source ([`EntropySource`]) and
//! a way to reset ([`ResetControl`]). Nothing above this crate knows which chip it runs on:
//! the QEMU board (`bsp/qemu-mps2`) and the real board (`bsp/nucleo-f429zi`) both hand the
//! application a [`BoardParts`].
#![cfg_attr(not(test), no_std)]

pub use embassy_net_driver::Driver as NetworkDriver;
pub use embedded_io_async::{Read as SerialRead, Write as SerialWrite};
pub use embedded_storage_async::nor_flash::{NorFlash, ReadNorFlash};

/// What a board's flash has done since boot; read by benchmarks and the status page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlashStatistics {
    /// Bytes passed to `write` (programmed).
    pub bytes_programmed: u64,
    /// Sectors erased.
    pub sectors_erased: u64,
    /// Bytes read.
    pub bytes_read: u64,
}

/// A NOR flash that counts its own program and erase work.
pub trait FlashCounters {
    /// The counters since boot.
    fn statistics(&self) -> FlashStatistics;
}

/// The board's persistent storage: NOR semantics (erase sets 0xFF, program only clears bits).
pub trait BoardFlash: NorFlash + FlashCounters {}
impl<T: NorFlash + FlashCounters> BoardFlash for T {}

/// A byte stream to the owner's host: the provisioning console (UART, USB CDC-ACM).
pub trait SerialLink: SerialRead + SerialWrite {}
impl<T: SerialRead + SerialWrite> SerialLink for T {}

/// Where a board's random bytes come from and how much they can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntropyKind {
    /// A hardware true random number generator.
    Hardware,
    /// A seed provisioned into flash, ratcheted forward and re-written at every boot.
    RatchetedSeed,
}

/// A source of cryptographically strong random bytes.
pub trait EntropySource {
    /// Fills `buffer` with random bytes.
    fn fill_bytes(&mut self, buffer: &mut [u8]);
    /// Where the bytes come from.
    fn kind(&self) -> EntropyKind;
}

/// Why the device last came out of reset, when the board can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetCause {
    /// Power applied.
    PowerOn,
    /// Software reset (lock, panic, update).
    Software,
    /// Watchdog expired.
    Watchdog,
    /// The board cannot tell.
    Unknown,
}

/// Resetting the device. The reset path wipes all RAM before anything else runs.
pub trait ResetControl {
    /// Resets the whole system; never returns.
    fn reset(&self) -> !;
    /// Why the device last came out of reset.
    fn cause(&self) -> ResetCause;
}

/// Everything a board hands the application at start-up.
pub struct BoardParts<Network, Flash, Serial, Entropy, Reset> {
    /// Short name of the board, e.g. `"qemu-mps2-an386"`.
    pub name: &'static str,
    /// The Ethernet driver for embassy-net.
    pub network: Network,
    /// The Ethernet MAC address.
    pub mac_address: [u8; 6],
    /// The persistent storage given to the spool and key store.
    pub flash: Flash,
    /// The provisioning console.
    pub serial: Serial,
    /// Random bytes for keys, nonces and TCP sequence numbers.
    pub entropy: Entropy,
    /// Reset control.
    pub reset: Reset,
}

/// Checks at compile time that a board's parts satisfy the traits; boards call this in a test.
pub fn assert_board_parts<N, F, S, E, R>(_parts: &BoardParts<N, F, S, E, R>)
where
    N: NetworkDriver,
    F: BoardFlash,
    S: SerialLink,
    E: EntropySource,
    R: ResetControl,
{
}
