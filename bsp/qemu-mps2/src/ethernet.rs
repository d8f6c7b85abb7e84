//! SMSC LAN9118 Ethernet controller (QEMU's model on mps2-an386) as an embassy-net driver.
//!
//! Receive is interrupt driven: the controller raises IRQ 13 when a frame's status enters
//! the RX status FIFO; the handler acknowledges and wakes the network stack, which pops
//! frames word by word from the RX data FIFO. Transmit writes TX command A/B and the frame
//! into the TX data FIFO; QEMU sends it at once. Link state comes from the PHY's basic
//! status register and its interrupt.

use core::task::Context;

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, Ordering};

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_sync::waitqueue::AtomicWaker;

use crate::registers::RegisterBlock;

const REGISTERS: RegisterBlock = RegisterBlock::at(0x4020_0000);

// System control and status registers (byte offsets).
const RX_DATA_FIFO: usize = 0x00;
const TX_DATA_FIFO: usize = 0x20;
const RX_STATUS_FIFO: usize = 0x40;
const TX_STATUS_FIFO: usize = 0x48;
const ID_REV: usize = 0x50;
const IRQ_CFG: usize = 0x54;
const INT_STS: usize = 0x58;
const INT_EN: usize = 0x5c;
const BYTE_TEST: usize = 0x64;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_DP_CTRL: usize = 0x78;
const RX_FIFO_INF: usize = 0x7c;
const TX_FIFO_INF: usize = 0x80;
const PMT_CTRL: usize = 0x84;
const FREE_RUN: usize = 0x9c;
const MAC_CSR_CMD: usize = 0xa4;
const MAC_CSR_DATA: usize = 0xa8;

const ID_LAN9118: u32 = 0x0118_0000;
const BYTE_TEST_PATTERN: u32 = 0x8765_4321;

// IRQ_CFG: enable, active-high push-pull (QEMU's line is active low otherwise).
const IRQ_CFG_ENABLE_ACTIVE_HIGH: u32 = 0x100 | 0x10 | 0x1;
// INT_STS / INT_EN bits.
const INT_RX_STATUS_LEVEL: u32 = 1 << 3;
const INT_PHY: u32 = 1 << 18;
const INT_TX_STATUS_FULL: u32 = 1 << 8;

const HW_CFG_SOFT_RESET: u32 = 1;
const PMT_CTRL_READY: u32 = 1;
const TX_CFG_TX_ON: u32 = 1 << 1;
const TX_CFG_STATUS_ALLOW_OVERRUN: u32 = 1 << 2;
const RX_DP_CTRL_FAST_FORWARD: u32 = 1 << 31;

// MAC control registers (through MAC_CSR_CMD/DATA).
const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;
const MAC_MII_ACC: u32 = 6;
const MAC_MII_DATA: u32 = 7;
const MAC_CSR_BUSY: u32 = 1 << 31;
const MAC_CSR_READ: u32 = 1 << 30;
const MAC_CR_RECEIVE_ENABLE: u32 = 1 << 2;
const MAC_CR_TRANSMIT_ENABLE: u32 = 1 << 3;
const MAC_CR_FULL_DUPLEX: u32 = 1 << 20;

// PHY registers (through MAC_MII_ACC/DATA), PHY address 1.
const PHY_BASIC_STATUS: u32 = 1;
const PHY_INTERRUPT_SOURCE: u32 = 29;
const PHY_INTERRUPT_MASK: u32 = 30;
const PHY_STATUS_LINK_UP: u32 = 1 << 2;
const PHY_INTERRUPT_LINK_DOWN_ENERGY_ON: u32 = 0x10 | 0x80;

/// Largest Ethernet frame handled (without FCS).
pub const MTU: usize = 1514;
const FCS_LENGTH: usize = 4;

static RECEIVE_WAKER: AtomicWaker = AtomicWaker::new();
static LINK_WAKER: AtomicWaker = AtomicWaker::new();
static FRAMES_RECEIVED: AtomicU32 = AtomicU32::new(0);
static FRAMES_SENT: AtomicU32 = AtomicU32::new(0);
static FRAMES_DROPPED: AtomicU32 = AtomicU32::new(0);

fn read(offset: usize) -> u32 {
    REGISTERS.read(offset)
}

fn write(offset: usize, value: u32) {
    REGISTERS.write(offset, value)
}

fn mac_read(register: u32) -> u32 {
    write(MAC_CSR_CMD, MAC_CSR_BUSY | MAC_CSR_READ | register);
    while read(MAC_CSR_CMD) & MAC_CSR_BUSY != 0 {}
    read(MAC_CSR_DATA)
}

fn mac_write(register: u32, value: u32) {
    write(MAC_CSR_DATA, value);
    write(MAC_CSR_CMD, MAC_CSR_BUSY | register);
    while read(MAC_CSR_CMD) & MAC_CSR_BUSY != 0 {}
}

fn phy_read(register: u32) -> u32 {
    mac_write(MAC_MII_ACC, (1 << 11) | (register << 6));
    mac_read(MAC_MII_DATA) & 0xffff
}

fn phy_write(register: u32, value: u32) {
    mac_write(MAC_MII_DATA, value);
    mac_write(MAC_MII_ACC, (1 << 11) | (register << 6) | 0b10);
}

/// Acknowledges the controller's interrupt and wakes the network stack.
pub(crate) fn on_interrupt() {
    let status = read(INT_STS);
    write(INT_STS, status);
    if status & INT_RX_STATUS_LEVEL != 0 {
        RECEIVE_WAKER.wake();
    }
    if status & INT_PHY != 0 {
        LINK_WAKER.wake();
    }
    if status & INT_TX_STATUS_FULL != 0 {
        // TX status words are not used; drop them so the FIFO never stalls.
        while read(TX_FIFO_INF) >> 16 & 0xff != 0 {
            read(TX_STATUS_FIFO);
        }
    }
}

/// The LAN9118 driver. Only one exists (it owns the controller).
pub struct Lan9118 {
    mac_address: [u8; 6],
}

impl Lan9118 {
    /// Resets and configures the controller; `None` when it does not answer as a LAN9118.
    pub(crate) fn new() -> Option<Self> {
        if read(BYTE_TEST) != BYTE_TEST_PATTERN || read(ID_REV) & 0xffff_0000 != ID_LAN9118 {
            return None;
        }
        write(HW_CFG, HW_CFG_SOFT_RESET);
        while read(HW_CFG) & HW_CFG_SOFT_RESET != 0 {}
        while read(PMT_CTRL) & PMT_CTRL_READY == 0 {}

        let low = mac_read(MAC_ADDRL);
        let high = mac_read(MAC_ADDRH);
        let mac_address = [
            low as u8,
            (low >> 8) as u8,
            (low >> 16) as u8,
            (low >> 24) as u8,
            high as u8,
            (high >> 8) as u8,
        ];
        // Filter on our own address and broadcast (the controller starts promiscuous).
        mac_write(MAC_CR, MAC_CR_RECEIVE_ENABLE | MAC_CR_TRANSMIT_ENABLE | MAC_CR_FULL_DUPLEX);
        write(TX_CFG, TX_CFG_TX_ON | TX_CFG_STATUS_ALLOW_OVERRUN);
        phy_write(PHY_INTERRUPT_MASK, PHY_INTERRUPT_LINK_DOWN_ENERGY_ON);
        write(INT_STS, u32::MAX);
        write(INT_EN, INT_RX_STATUS_LEVEL | INT_PHY | INT_TX_STATUS_FULL);
        write(IRQ_CFG, IRQ_CFG_ENABLE_ACTIVE_HIGH);
        Some(Self { mac_address })
    }

    /// The MAC address QEMU gave the NIC (`-nic ...,mac=`).
    pub fn mac_address(&self) -> [u8; 6] {
        self.mac_address
    }

    /// The controller's free-running counter (25 MHz); a little start-up jitter for entropy.
    pub fn free_running_counter(&self) -> u32 {
        read(FREE_RUN)
    }

    /// Frames received, sent and dropped (too long or with errors) since boot.
    pub fn frame_counts() -> (u32, u32, u32) {
        (
            FRAMES_RECEIVED.load(Ordering::Relaxed),
            FRAMES_SENT.load(Ordering::Relaxed),
            FRAMES_DROPPED.load(Ordering::Relaxed),
        )
    }

    fn frames_waiting() -> u32 {
        (read(RX_FIFO_INF) >> 16) & 0xff
    }

    fn transmit_space() -> usize {
        (read(TX_FIFO_INF) & 0xffff) as usize
    }
}

/// A received frame waiting in the controller's RX FIFO.
pub struct ReceiveToken<'a> {
    _driver: PhantomData<&'a Lan9118>,
}

/// Room for one frame in the controller's TX FIFO.
pub struct TransmitToken<'a> {
    _driver: PhantomData<&'a Lan9118>,
}

impl embassy_net_driver::RxToken for ReceiveToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut buffer = [0u8; MTU + FCS_LENGTH + 3];
        let status = read(RX_STATUS_FIFO);
        let length_with_fcs = ((status >> 16) & 0x3fff) as usize;
        let has_error = status & (1 << 15) != 0;
        if has_error || !(14 + FCS_LENGTH..=MTU + FCS_LENGTH).contains(&length_with_fcs) {
            FRAMES_DROPPED.fetch_add(1, Ordering::Relaxed);
            discard_frame(length_with_fcs);
            return f(&mut []);
        }
        let words = length_with_fcs.div_ceil(4);
        for chunk in buffer[..words * 4].chunks_exact_mut(4) {
            chunk.copy_from_slice(&read(RX_DATA_FIFO).to_le_bytes());
        }
        FRAMES_RECEIVED.fetch_add(1, Ordering::Relaxed);
        f(&mut buffer[..length_with_fcs - FCS_LENGTH])
    }
}

fn discard_frame(length_with_fcs: usize) {
    if length_with_fcs.div_ceil(4) >= 4 {
        write(RX_DP_CTRL, RX_DP_CTRL_FAST_FORWARD);
        while read(RX_DP_CTRL) & RX_DP_CTRL_FAST_FORWARD != 0 {}
    } else {
        for _ in 0..length_with_fcs.div_ceil(4) {
            read(RX_DATA_FIFO);
        }
    }
}

impl embassy_net_driver::TxToken for TransmitToken<'_> {
    fn consume<R, F>(self, length: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut buffer = [0u8; MTU + 3];
        let length = length.min(MTU);
        let result = f(&mut buffer[..length]);
        // Command A: first and last segment, buffer size; command B: tag and packet length.
        let command_a = (1 << 13) | (1 << 12) | length as u32;
        let command_b = ((length as u32) << 16) | length as u32;
        write(TX_DATA_FIFO, command_a);
        write(TX_DATA_FIFO, command_b);
        for chunk in buffer[..length.div_ceil(4) * 4].chunks_exact(4) {
            write(TX_DATA_FIFO, u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
        }
        FRAMES_SENT.fetch_add(1, Ordering::Relaxed);
        result
    }
}

impl embassy_net_driver::Driver for Lan9118 {
    type RxToken<'a> = ReceiveToken<'a> where Self: 'a;
    type TxToken<'a> = TransmitToken<'a> where Self: 'a;

    fn receive(&mut self, cx: &mut Context) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        RECEIVE_WAKER.register(cx.waker());
        if Self::frames_waiting() == 0 || Self::transmit_space() < MTU + 8 {
            return None;
        }
        Some((ReceiveToken { _driver: PhantomData }, TransmitToken { _driver: PhantomData }))
    }

    fn transmit(&mut self, cx: &mut Context) -> Option<Self::TxToken<'_>> {
        if Self::transmit_space() < MTU + 8 {
            // QEMU empties the FIFO synchronously, so this only happens mid-write.
            cx.waker().wake_by_ref();
            return None;
        }
        Some(TransmitToken { _driver: PhantomData })
    }

    fn link_state(&mut self, cx: &mut Context) -> LinkState {
        LINK_WAKER.register(cx.waker());
        // Reading the PHY's interrupt source acknowledges the PHY interrupt.
        phy_read(PHY_INTERRUPT_SOURCE);
        if phy_read(PHY_BASIC_STATUS) & PHY_STATUS_LINK_UP != 0 {
            LinkState::Up
        } else {
            LinkState::Down
        }
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::default();
        capabilities.max_transmission_unit = MTU;
        capabilities.max_burst_size = Some(1);
        capabilities
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac_address)
    }
}
