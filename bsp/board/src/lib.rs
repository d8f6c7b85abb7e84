//! The board abstraction: the small set of things every homemx board gives the application.
//!
//! A board is a network driver ([`embassy_net_driver::Driver`]), two persistent NOR flashes
//! ([`embedded_storage_async::nor_flash::NorFlash`] plus [`FlashCounters`]: the key store's and
//! the data flash, laid out by a [`FlashMap`]), a serial link
//! for the provisioning console ([`SerialLink`]), an entropy source ([`EntropySource`]) and
//! a way to reset ([`ResetControl`], which also says whether the chip erases its RAM at reset,
//! [`HardwareRamWipe`]), a tamper loop ([`TamperLoop`]) and a key bound to the chip ([`ChipKey`]). Nothing above this crate knows which chip it runs on:
//! the QEMU board (`bsp/qemu-mps2`), the real board (`bsp/stm32h573i-dk`) and the host
//! simulator's board (`bsp/sim`) all hand the application a [`BoardParts`].
#![cfg_attr(not(test), no_std)]

pub mod bitbang_i2c;
pub mod tamper_watch;

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
    /// A stream derived from a host simulation's seed (`bsp/sim`): reproducible by design,
    /// so anyone who knows the seed knows every byte. Never a product's source.
    Simulated,
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

/// Whether the chip itself erases its SRAM at reset (on STM32, option bytes such as the H5's
/// `SRAM1_3_RST` and `SRAM2_RST`), besides the software wipe every board's reset handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HardwareRamWipe {
    /// The board has no such option (QEMU, the host simulator): the software wipe is all.
    NotAvailable,
    /// The chip erases all its SRAM at every reset.
    Set,
    /// The chip can erase its SRAM at reset but is not set to; `missing` names the options
    /// that are not set (for the log and the alert).
    NotSet {
        /// The options not set, e.g. `"SRAM1_3_RST SRAM2_RST"`.
        missing: &'static str,
    },
}

impl HardwareRamWipe {
    /// Whether the device may unlock: not on a chip that could erase its SRAM at reset and is
    /// not set to (a key left in RAM would survive a reset into a debugger or another image).
    pub const fn permits_unlock(self) -> bool {
        !matches!(self, HardwareRamWipe::NotSet { .. })
    }
}

/// Resetting the device. The reset path wipes all RAM before anything else runs.
pub trait ResetControl {
    /// Resets the whole system; never returns.
    fn reset(&self) -> !;
    /// Why the device last came out of reset.
    fn cause(&self) -> ResetCause;
    /// Whether the chip erases its SRAM at reset by itself, as read from the chip now.
    fn hardware_ram_wipe(&self) -> HardwareRamWipe;
}

/// What a board's tamper loop (a normally-closed door contact or motion detector, seed 000
/// §8.3) reads now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TamperState {
    /// The loop is closed: nothing happened.
    Closed,
    /// The loop is open (or was opened since the last read, on a board that latches it):
    /// someone opened the case or the door.
    Open,
    /// No tamper loop is fitted on this board (or its input did not answer).
    NotFitted,
}

/// A tamper loop input. The application polls it a few times a second (it never blocks).
pub trait TamperLoop {
    /// The loop's state now.
    fn state(&mut self) -> TamperState;
}

/// The tamper loop of a board that has none.
pub struct NoTamperLoop;

impl TamperLoop for NoTamperLoop {
    fn state(&mut self) -> TamperState {
        TamperState::NotFitted
    }
}

/// Why a board could not derive its chip key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChipKeyError {
    /// The board has no key bound to its chip (QEMU: [`NoChipKey`]).
    NotAvailable,
    /// The hardware refused or did not answer (on the H5: SAES could not load the DHUK, which it
    /// refuses after a tamper event until the next reset).
    Hardware,
}

/// A secret that only this chip can compute (on the STM32H573: AES under the SAES's derived
/// hardware unique key, DHUK, which software can use but never read). The key store mixes it
/// into the key that wraps the data key, so a copy of the flash is useless on any other chip.
pub trait ChipKey {
    /// Whether the board has a chip key (false: [`ChipKey::derive`] always fails).
    fn is_available(&self) -> bool;
    /// Writes the 32-byte secret for `label` into `output` (the caller wipes it). The same chip
    /// gives the same bytes for the same label at every boot; another chip gives unrelated ones.
    fn derive(&mut self, label: &[u8; 32], output: &mut [u8; 32]) -> Result<(), ChipKeyError>;
}

/// The chip key of a board that has none: the key store's records then say "not bound".
pub struct NoChipKey;

impl ChipKey for NoChipKey {
    fn is_available(&self) -> bool {
        false
    }

    fn derive(&mut self, _label: &[u8; 32], _output: &mut [u8; 32]) -> Result<(), ChipKeyError> {
        Err(ChipKeyError::NotAvailable)
    }
}

/// Everything a board hands the application at start-up.
pub struct BoardParts<Network, Flash, Serial, Entropy, Reset, KeyFlash, Tamper, Chip> {
    /// Short name of the board, e.g. `"qemu-mps2-an386"`.
    pub name: &'static str,
    /// The Ethernet driver for embassy-net.
    pub network: Network,
    /// The Ethernet MAC address.
    pub mac_address: [u8; 6],
    /// The data flash: the key-value store and the spool ([`FlashMap`]'s `sector_size`).
    pub flash: Flash,
    /// The key store's flash ([`FlashMap`]'s `key_sector_size`): on the real board the chip's
    /// internal flash while the data flash is an external NOR; a separate window of the same
    /// device on boards with one flash.
    pub key_flash: KeyFlash,
    /// The provisioning console.
    pub serial: Serial,
    /// Random bytes for keys, nonces and TCP sequence numbers.
    pub entropy: Entropy,
    /// Reset control.
    pub reset: Reset,
    /// The tamper loop (or a part that says none is fitted).
    pub tamper: Tamper,
    /// The key bound to the chip (or [`NoChipKey`]).
    pub chip_key: Chip,
}

/// Checks at compile time that a board's parts satisfy the traits; boards call this in a test.
pub fn assert_board_parts<N, F, S, E, R, K, T, C>(_parts: &BoardParts<N, F, S, E, R, K, T, C>)
where
    T: TamperLoop,
    C: ChipKey,
    N: NetworkDriver,
    F: BoardFlash,
    K: BoardFlash,
    S: SerialLink,
    E: EntropySource,
    R: ResetControl,
{
}

/// How many of each thing a board has room for. The board chooses the sizes (as in Tock); the
/// application takes every count from its board's `SIZING` and holds no per-board constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizing {
    /// SMTP sessions served at once on port 25 (one task and socket each).
    pub mx_sessions: usize,
    /// Sessions served at once on each submission port (587 STARTTLS, 465 implicit TLS): each
    /// port has this many listeners; both share one pool of this many sessions.
    pub submission_sessions: usize,
    /// Inbound TLS sessions at once over ports 25, 587 and 465 (their record buffers and
    /// rustls state are on the heap, see `heap_bytes`); one more gets `454 4.7.0` at
    /// `STARTTLS` (25, 587) or `421 4.7.0` (465).
    pub tls_sessions: usize,
    /// Mail transactions open at once over both ports (taken at `MAIL FROM`).
    pub transaction_slots: usize,
    /// Port-25 listeners that only answer `421` while every session is busy.
    pub mx_spare_listeners: usize,
    /// Port-587 listeners that only answer `421`.
    pub submission_spare_listeners: usize,
    /// HTTP sessions (status page, `/health`) served at once.
    pub http_sessions: usize,
    /// Messages the spool holds at once (80 bytes of RAM each on the boards).
    pub spool_messages: usize,
    /// The TLS heap: [`SHARED_TLS_HEAP_BYTES`] plus [`TLS_SESSION_HEAP_BYTES`] for each of
    /// `tls_sessions` inbound sessions ([`heap_for`]; the services check at compile time that
    /// it holds them).
    pub heap_bytes: usize,
    /// Events the RAM event log keeps for `homemx logs` (108 bytes each; the oldest go).
    pub event_log_entries: usize,
}

/// Heap one inbound TLS session may hold across its awaits: the server's own struct (about
/// 1.2 KB on the board) and what rustls holds between calls: at most 9,174 octets with a
/// 5,826-octet CA chain (the queued flight; 9.5 KB at the store's 6 KiB limit), 3.6 KB with
/// the device's own certificate, 2.6 KB once open, measured on the host, whose 64-bit pointers
/// make it larger than on the board (homemx-tls's `server_heap` test asserts 9.5 KiB at the
/// store's limit; `homemx_services::inbound_tls` checks the sum at compile time). Its record
/// buffers (16,645 octets in, 2,048 out, the decrypted data waiting in the incoming one) are
/// not heap: each permit holds one of `tls_sessions` static buffers, so the heap never has to
/// find an 18.7 KB hole per session. What a call allocates and frees before it returns
/// (building the flight: 9.6 KB above what the session then holds; a record's hand-over) is in
/// [`SHARED_TLS_HEAP_BYTES`]: the tasks share one executor and a call does not await, so one
/// such call runs at a time. The rest, about 1.3 KB, is for the allocator's rounding (8
/// octets) and the fragmentation of embedded-alloc's first-fit linked-list heap.
pub const TLS_SESSION_HEAP_BYTES: usize = 12 * 1024;

/// Heap every board holds besides the inbound sessions, sized as the session's share is: what
/// is held across awaits, and once what one call allocates and frees before it returns (the
/// tasks share one executor and a call does not await, so one such call runs at a time).
/// Held: the courier's one provider connection, its client and configuration (its record
/// buffers are static), with the largest chain a server, or an attacker on the path before the
/// chain is refused, can make it take (rustls keeps it while it checks it; as many certificates
/// as the 16,645-octet incoming buffer brings): 18,905 B measured on the host with a
/// 15,261-octet chain, at most 20.5 KiB asserted at the buffer's size (homemx-tls's
/// `server_heap` test; 4,418 B with an RSA-4096 leaf and root); and the inbound sessions'
/// server configuration (the device's chain, up to the store's 6 KiB, and key: at most 7 KiB
/// asserted, 6,789 B with a 5,826-octet chain). Once: the largest call, the client's that
/// checks the chain (23,280 B above what it holds, at most 24 KiB asserted); a record's
/// hand-over is less (rustls 0.23 decrypts each record into a copy of its own before the pump
/// moves it into the connection's incoming buffer: 16,480 B), and so is a server's making of
/// its first flight (9.6 KB above what it then holds). 51.5 KiB with these bounds, measured
/// with the host's 64-bit pointers (in QEMU the e2e `provider_certificates` reaches 27,912 B
/// with every kind of provider chain, the host 27,698 B for the RSA-4096 one: no smaller on
/// the board), and 2.5 KiB for the allocator's rounding and contiguous holes in the largest
/// call. Not counted here: an ACME run's response buffers (17 KB) and its port 443 listeners'
/// (9 KB) while it lasts, which take room the inbound sessions leave (the e2e `acme_tls_alpn`:
/// 53 to 74 KB high-water with the CA's three validation handshakes).
pub const SHARED_TLS_HEAP_BYTES: usize = 54 * 1024;

/// The heap of a board serving `tls_sessions` inbound TLS sessions (see [`Sizing::heap_bytes`]).
pub const fn heap_for(tls_sessions: usize) -> usize {
    SHARED_TLS_HEAP_BYTES + tls_sessions * TLS_SESSION_HEAP_BYTES
}

/// Sockets every board's stack holds besides the mail and HTTP listeners: DHCP, UDP echo,
/// the delivery connection to the mailbox host, the provider connection (smarthost, POP3,
/// DynDNS), DNS, SNTP and one spare.
pub const FIXED_SOCKETS: usize = 7;

impl Sizing {
    /// The sockets the network stack must hold: every listener plus [`FIXED_SOCKETS`].
    pub const fn sockets(&self) -> usize {
        FIXED_SOCKETS
            + self.mx_sessions
            + 2 * self.submission_sessions
            + self.mx_spare_listeners
            + self.submission_spare_listeners
            + self.http_sessions
    }

    /// Whether the counts fit together (checked at compile time by the application:
    /// `const _: () = assert!(SIZING.is_consistent());`).
    pub const fn is_consistent(&self) -> bool {
        self.mx_sessions >= 1
            && self.submission_sessions >= 1
            && self.tls_sessions >= 1
            && self.heap_bytes >= heap_for(self.tls_sessions)
            && self.transaction_slots >= 1
            && self.transaction_slots <= self.mx_sessions + self.submission_sessions
            && self.http_sessions >= 1
            && self.spool_messages >= 4
            && self.event_log_entries >= 16
    }
}

/// Where the stores live: the key store on the board's key flash (`BoardParts::key_flash`),
/// the key-value store and then the spool on its data flash (`BoardParts::flash`), each from
/// the start of its flash and in erase sectors of that flash's size. A board with one flash
/// hands out two windows of it (the key store's first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlashMap {
    /// The key flash's erase sector size.
    pub key_sector_size: u32,
    /// Sectors of the key store (wrapped data key, admin key, unlock counter).
    pub key_store_sectors: u32,
    /// The data flash's erase sector size.
    pub sector_size: u32,
    /// Sectors of the key-value store (configuration, credentials, UIDLs, counters).
    pub key_value_sectors: u32,
    /// Sectors of the spool.
    pub spool_sectors: u32,
}

impl FlashMap {
    /// The smallest sector size the stores are tested with (`homemx-spool`'s tests run 4, 8,
    /// 16, 64 and 128 KiB; nothing in their layouts depends on the size).
    pub const MINIMUM_SECTOR_SIZE: u32 = 4 * 1024;
    /// The largest sector size the stores are tested with.
    pub const MAXIMUM_SECTOR_SIZE: u32 = 128 * 1024;
    /// The spool's fewest bytes: one message with the largest envelope (4 KiB, 8.4 KB of
    /// records) beside the spare sector needs four 4 KiB sectors.
    pub const MINIMUM_SPOOL_BYTES: u32 = 16 * 1024;

    /// The bytes the key store needs from the key flash.
    pub const fn key_store_bytes(&self) -> u32 {
        self.key_store_sectors * self.key_sector_size
    }

    /// The bytes the key-value store and the spool need from the data flash.
    pub const fn data_bytes(&self) -> u32 {
        (self.key_value_sectors + self.spool_sectors) * self.sector_size
    }

    const fn sector_size_is_tested(size: u32) -> bool {
        size.is_power_of_two() && size >= Self::MINIMUM_SECTOR_SIZE && size <= Self::MAXIMUM_SECTOR_SIZE
    }

    /// Whether the stores run on this map (checked at compile time by the application:
    /// `const _: () = assert!(FLASH_MAP.is_consistent());`): power-of-two sector sizes from
    /// [`FlashMap::MINIMUM_SECTOR_SIZE`] to [`FlashMap::MAXIMUM_SECTOR_SIZE`] on both flashes;
    /// two sectors at least for the key store (its record moves between slots) and for the
    /// key-value store (one is its buffer for garbage collection); three for the spool (one is
    /// its spare) and [`FlashMap::MINIMUM_SPOOL_BYTES`]. The stores check the same again when
    /// they are made (the spool exactly, for the flash's write size).
    pub const fn is_consistent(&self) -> bool {
        Self::sector_size_is_tested(self.key_sector_size)
            && Self::sector_size_is_tested(self.sector_size)
            && self.key_store_sectors >= 2
            && self.key_value_sectors >= 2
            && self.spool_sectors >= 3
            && self.spool_sectors as u64 * self.sector_size as u64 >= Self::MINIMUM_SPOOL_BYTES as u64
            && self.key_store_sectors as u64 * self.key_sector_size as u64 <= u32::MAX as u64
            && (self.key_value_sectors as u64 + self.spool_sectors as u64) * self.sector_size as u64 <= u32::MAX as u64
    }
}

#[cfg(test)]
mod ram_wipe_tests {
    use super::HardwareRamWipe;

    #[test]
    fn only_a_chip_that_could_erase_its_ram_and_is_not_set_to_refuses_to_unlock() {
        assert!(HardwareRamWipe::NotAvailable.permits_unlock(), "QEMU and the simulator: the software wipe only");
        assert!(HardwareRamWipe::Set.permits_unlock());
        assert!(!HardwareRamWipe::NotSet { missing: "SRAM2_RST" }.permits_unlock());
    }
}

#[cfg(test)]
mod sizing_tests {
    use super::*;

    const SIZING: Sizing = Sizing {
        mx_sessions: 4,
        submission_sessions: 2,
        tls_sessions: 3,
        transaction_slots: 4,
        mx_spare_listeners: 8,
        submission_spare_listeners: 1,
        http_sessions: 3,
        spool_messages: 128,
        heap_bytes: heap_for(3),
        event_log_entries: 64,
    };

    #[test]
    fn sockets_are_the_listeners_plus_the_fixed_ones() {
        assert_eq!(SIZING.sockets(), 7 + 4 + 2 * 2 + 8 + 1 + 3);
        assert!(SIZING.is_consistent());
        assert!(!Sizing { transaction_slots: 7, ..SIZING }.is_consistent(), "more slots than sessions");
        assert!(!Sizing { transaction_slots: 0, ..SIZING }.is_consistent());
        assert!(!Sizing { event_log_entries: 8, ..SIZING }.is_consistent(), "too few events to read back");
        assert!(!Sizing { tls_sessions: 0, ..SIZING }.is_consistent(), "no inbound TLS at all");
        let map = FlashMap { key_sector_size: 8192, key_store_sectors: 2, sector_size: 4096, key_value_sectors: 64, spool_sectors: 1982 };
        assert_eq!(map.key_store_bytes(), 2 * 8192);
        assert_eq!(map.data_bytes(), 2046 * 4096);
    }

    #[test]
    fn flash_maps_of_every_tested_sector_size_are_consistent_and_others_are_not() {
        for shift in 12..=17 {
            let map = FlashMap { key_sector_size: 1 << shift, key_store_sectors: 2, sector_size: 1 << shift, key_value_sectors: 2, spool_sectors: 4 };
            assert!(map.is_consistent(), "{map:?}");
            assert!(FlashMap { key_sector_size: 8192, ..map }.is_consistent(), "the key flash's sectors are its own");
        }
        let map = FlashMap { key_sector_size: 128 * 1024, key_store_sectors: 2, sector_size: 128 * 1024, key_value_sectors: 2, spool_sectors: 3 };
        assert!(map.is_consistent(), "seven 128 KiB sectors, the fewest at the largest size");
        assert!(!FlashMap { sector_size: 2048, ..map }.is_consistent(), "below 4 KiB");
        assert!(!FlashMap { sector_size: 256 * 1024, ..map }.is_consistent(), "above 128 KiB");
        assert!(!FlashMap { sector_size: 24 * 1024, ..map }.is_consistent(), "not a power of two");
        assert!(!FlashMap { key_sector_size: 2048, ..map }.is_consistent(), "a key flash below 4 KiB");
        assert!(!FlashMap { key_sector_size: 24 * 1024, ..map }.is_consistent(), "a key flash sector not a power of two");
        assert!(!FlashMap { key_store_sectors: 1, ..map }.is_consistent(), "one key store slot");
        assert!(!FlashMap { key_value_sectors: 1, ..map }.is_consistent(), "no buffer sector");
        assert!(!FlashMap { spool_sectors: 2, ..map }.is_consistent(), "no spare sector");
        let small = FlashMap { key_sector_size: 4096, key_store_sectors: 2, sector_size: 4096, key_value_sectors: 2, spool_sectors: 3 };
        assert!(!small.is_consistent(), "three 4 KiB sectors cannot hold the largest envelope");
        assert!(!FlashMap { spool_sectors: 40_000, ..map }.is_consistent(), "beyond 4 GiB");
    }
}
