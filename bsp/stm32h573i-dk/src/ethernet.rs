//! Ethernet of the STM32H573I-DK: the STM32H573's MAC in RMII mode with the kit's LAN8742A PHY,
//! as an `embassy-net-driver` driver (embassy-stm32's `eth`, the driver embassy's own hardware
//! tests run on the H563), and the board's MAC address.
//!
//! RMII pins (as ST's own STM32H573I-DK Ethernet projects configure them; UM3143, solder bridges
//! as shipped):
//!
//! | signal | pin |
//! | --- | --- |
//! | REF_CLK (50 MHz from the PHY) | PA1 |
//! | MDIO | PA2 |
//! | MDC | PC1 |
//! | CRS_DV | PA7 |
//! | RXD0 / RXD1 | PC4 / PC5 |
//! | TX_EN | PG11 |
//! | TXD0 / TXD1 | PG13 / PG12 |
//!
//! The LAN8742A answers on SMI address 0 and speaks the standard IEEE 802.3 clause 22
//! registers, so embassy-stm32's generic PHY driver serves; it polls the link every 500 ms.

use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue, Sma, StationManagement};
use embassy_stm32::peripherals::{ETH, ETH_SMA, PA1, PA2, PA7, PC1, PC4, PC5, PG11, PG12, PG13};
use embassy_stm32::Peri;
use static_cell::StaticCell;

use crate::interrupts::Interrupts;

/// SMI (MDIO) address of the LAN8742A on the STM32H573I-DK (its PHYAD0 strap is low).
pub const PHY_ADDRESS: u8 = 0;
/// PHY identifier register 1 (IEEE 802.3 clause 22 register 2).
const PHY_IDENTIFIER_1_REGISTER: u8 = 2;
/// PHY identifier register 2 (register 3).
const PHY_IDENTIFIER_2_REGISTER: u8 = 3;
/// The LAN8742A's identifier: OUI bits in register 2, model in the top 12 bits of register 3.
const LAN8742A_IDENTIFIER: (u16, u16) = (0x0007, 0xC130);

/// Transmit descriptors and buffers (1514 bytes each). Two: the DMA sends one frame while
/// embassy-net fills the other, and a full ring only makes the stack wait for the transmit
/// interrupt (a 1,514-byte frame leaves in 121 µs at 100 Mbit/s, 1.2 ms at 10 Mbit/s), never
/// drops what it sends; the TCP sockets' transmit buffers (1 to 2 KiB each) hold the rest.
/// Four cost 3 KB more for no measurable gain on a link that carries mail.
pub const TRANSMIT_QUEUE_LENGTH: usize = 2;
/// Receive descriptors and buffers (1536 bytes each): enough for a burst of full frames while
/// the executor is busy in a TLS handshake.
pub const RECEIVE_QUEUE_LENGTH: usize = 4;

/// The Ethernet driver handed to embassy-net.
pub type EthernetDriver = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

/// The pins and peripherals the Ethernet needs, taken from embassy-stm32's `Peripherals`.
pub struct EthernetPins {
    /// The MAC and its DMA.
    pub mac: Peri<'static, ETH>,
    /// The station management (MDIO) interface.
    pub station_management: Peri<'static, ETH_SMA>,
    /// RMII reference clock input.
    pub reference_clock: Peri<'static, PA1>,
    /// MDIO data.
    pub management_data: Peri<'static, PA2>,
    /// MDIO clock.
    pub management_clock: Peri<'static, PC1>,
    /// Carrier sense / receive data valid.
    pub carrier_sense_data_valid: Peri<'static, PA7>,
    /// Receive data bit 0.
    pub receive_data_0: Peri<'static, PC4>,
    /// Receive data bit 1.
    pub receive_data_1: Peri<'static, PC5>,
    /// Transmit enable.
    pub transmit_enable: Peri<'static, PG11>,
    /// Transmit data bit 0.
    pub transmit_data_0: Peri<'static, PG13>,
    /// Transmit data bit 1.
    pub transmit_data_1: Peri<'static, PG12>,
}

/// The PHY did not answer on the management interface (reads gave all ones or all zeros).
#[derive(Debug, defmt::Format)]
pub struct PhyMissing;

/// Starts the MAC, resets and configures the PHY (auto-negotiation) and returns the driver.
///
/// The PHY is probed first: embassy-stm32's PHY reset waits for the PHY's reset bit to clear
/// and would wait forever on a PHY that does not answer. Call once: the descriptor rings live
/// in a static.
pub fn start(pins: EthernetPins, mac_address: [u8; 6]) -> Result<EthernetDriver, PhyMissing> {
    // 9,288 B (llvm-nm): the MAC's DMA moves each frame whole into one buffer, so every
    // descriptor has a full-frame buffer: 2 × 1,516 B to send, 4 × 1,536 B to receive, and the
    // 6 descriptors. The receive ring is not shrunk: fewer receive buffers drop frames during a
    // TLS handshake's computation, which only the board itself can measure (QEMU's LAN9118 has
    // its own FIFOs).
    static QUEUE: StaticCell<PacketQueue<TRANSMIT_QUEUE_LENGTH, RECEIVE_QUEUE_LENGTH>> = StaticCell::new();
    // `init` builds the rings in place in the static: no 12 KiB temporary on the stack.
    let queue = QUEUE.uninit();
    PacketQueue::init(queue);
    // SAFETY: `PacketQueue::init` guarantees the value is initialised (all descriptors zero).
    let queue = unsafe { queue.assume_init_mut() };
    let mut station_management = Sma::new(pins.station_management, pins.management_data, pins.management_clock);
    let identifier = (
        station_management.smi_read(PHY_ADDRESS, PHY_IDENTIFIER_1_REGISTER),
        station_management.smi_read(PHY_ADDRESS, PHY_IDENTIFIER_2_REGISTER),
    );
    if matches!(identifier.0, 0x0000 | 0xFFFF) {
        return Err(PhyMissing);
    }
    if (identifier.0, identifier.1 & 0xFFF0) != LAN8742A_IDENTIFIER {
        defmt::warn!("Ethernet PHY {=u16:04x}:{=u16:04x} is not a LAN8742A; using it as a generic PHY", identifier.0, identifier.1);
    }
    let phy = GenericPhy::new(station_management, PHY_ADDRESS);
    Ok(Ethernet::new_with_phy(
        queue,
        pins.mac,
        Interrupts,
        pins.reference_clock,
        pins.carrier_sense_data_valid,
        pins.receive_data_0,
        pins.receive_data_1,
        pins.transmit_data_0,
        pins.transmit_data_1,
        pins.transmit_enable,
        mac_address,
        phy,
    ))
}

/// The board's MAC address, derived from the chip's 96-bit unique device ID.
///
/// The board has no MAC address of its own (no EEPROM), so a stable one is made from the
/// unique ID with a 64-bit FNV-1a hash (the ID's bytes are wafer coordinates and lot numbers,
/// not uniformly spread, so they are mixed rather than truncated). The first octet gets the
/// locally-administered bit set and the multicast bit cleared (IEEE 802 "U/L" and "I/G" bits).
pub fn mac_address_from_unique_id(unique_id: &[u8; 12]) -> [u8; 6] {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET_BASIS;
    for byte in b"homemx-mac:".iter().chain(unique_id.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    let bytes = hash.to_be_bytes();
    let mut mac_address = [bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]];
    mac_address[0] = (mac_address[0] | 0x02) & !0x01;
    mac_address
}
