//! The simulated Ethernet: a segment (a switch without delays) whose ports are
//! `embassy-net-driver` drivers, with faults drawn from the simulation's seed.
//!
//! The device's port and the simulated peers' ports (each an embassy-net stack on the same
//! thread) attach to one [`Segment`]. A frame a port sends goes, at once, to the port with its
//! destination MAC address, or to every other port if it is a broadcast or multicast frame.
//! On its way to each receiver the [`FaultPlan`] may drop it, corrupt one bit of it after the
//! Ethernet header (the receivers' IP, UDP and TCP checksums must catch it; a real FCS would
//! drop such a frame first), hold it back and deliver it after the next frame to the same
//! port (a reorder), or deliver it twice. Each frame costs the same five draws from the
//! segment's ChaCha20 stream whatever the plan, and frames are sent in the executor's
//! deterministic order, so one seed gives the same faults, byte for byte; [`FaultCounts`]
//! counts every fault injected and [`Segment::digest`] hashes every delivery (time, port,
//! bytes) so two runs can be compared.
//!
//! [`Segment::observe`] taps the segment read-only, as an eavesdropper on the wire would: an
//! observer sees every frame a port sends (before the faults), in order, and changes nothing.
//!
//! Besides the faults: [`Segment::reset_link`] takes a port's link down (what was queued for
//! it is lost; embassy-net sees the link go down) until [`Segment::set_link`] brings it up; a
//! port whose boot has lost power neither sends nor receives; a receiver holds at most
//! [`INBOX_FRAMES`] frames and more are lost as on a NIC whose ring is full
//! ([`SegmentStatistics::overflowed`], not a fault of the plan).
//!
//! Owns the ports' queues and the fault stream. Calls: the wakers of the drivers' tasks, the
//! time driver (for the digest).

use core::task::{Context, Waker};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use embassy_net_driver::{Capabilities, Driver, HardwareAddress, LinkState, RxToken, TxToken};
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use sha2::{Digest, Sha256};

use crate::power::DevicePower;
use crate::seeds::{self, Domain};
use crate::time_driver;

/// The largest frame: 1500 bytes of IP and the 14-byte Ethernet header (no FCS).
pub const MTU: usize = 1514;
/// Frames a port holds until its stack reads them.
pub const INBOX_FRAMES: usize = 64;
const HEADER_BYTES: usize = 14;

/// How often each fault strikes a frame on its way to a receiver, in parts per million.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The frame is lost.
    pub drop_per_million: u32,
    /// The frame arrives twice.
    pub duplicate_per_million: u32,
    /// The frame is held back and arrives after the next frame to the same port.
    pub reorder_per_million: u32,
    /// One bit after the Ethernet header is flipped.
    pub corrupt_per_million: u32,
}

impl FaultPlan {
    /// Every frame arrives once, intact and in order.
    pub const NONE: Self = Self { drop_per_million: 0, duplicate_per_million: 0, reorder_per_million: 0, corrupt_per_million: 0 };
}

/// Faults injected so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Deliveries dropped.
    pub dropped: u64,
    /// Deliveries duplicated.
    pub duplicated: u64,
    /// Frames held back to arrive after the next one.
    pub reordered: u64,
    /// Frames with one bit flipped.
    pub corrupted: u64,
    /// Links taken down by [`Segment::reset_link`].
    pub link_resets: u64,
}

impl FaultCounts {
    /// All faults together.
    pub fn total(&self) -> u64 {
        self.dropped + self.duplicated + self.reordered + self.corrupted + self.link_resets
    }
}

/// What the segment carried, apart from the faults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentStatistics {
    /// Frames the ports sent.
    pub frames_sent: u64,
    /// Frames put into a receiver's queue (duplicates included).
    pub frames_delivered: u64,
    /// Frames for a MAC address no attached port has.
    pub undeliverable: u64,
    /// Frames lost because the receiver's queue was full.
    pub overflowed: u64,
    /// Frames lost because the sender or receiver had no power, no link or was unplugged.
    pub lost_offline: u64,
}

/// A port of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(usize);

struct Port {
    mac: [u8; 6],
    inbox: VecDeque<Vec<u8>>,
    /// A frame held back for a reorder: delivered after the next frame to this port.
    held: Option<Vec<u8>>,
    receive_waker: Option<Waker>,
    link_waker: Option<Waker>,
    attached: bool,
    link_up: bool,
    /// The boot's power for the device's port; peers' ports are always powered.
    power: Option<DevicePower>,
}

impl Port {
    fn is_online(&self) -> bool {
        self.attached && self.link_up && self.power.as_ref().is_none_or(DevicePower::is_on)
    }

    fn wake_all(&mut self) {
        for waker in [self.receive_waker.take(), self.link_waker.take()].into_iter().flatten() {
            waker.wake();
        }
    }
}

/// A read-only tap on the frames sent.
type Observer = Box<dyn FnMut(&[u8])>;

struct SegmentState {
    ports: Vec<Port>,
    observers: Vec<Observer>,
    plan: FaultPlan,
    random: ChaCha20Rng,
    faults: FaultCounts,
    statistics: SegmentStatistics,
    digest: Sha256,
}

/// Draws whether a fault of `per_million` strikes.
fn strikes(draw: u32, per_million: u32) -> bool {
    ((draw as u64 * 1_000_000) >> 32) < per_million as u64
}

impl SegmentState {
    fn send(&mut self, from: usize, frame: Vec<u8>) {
        self.statistics.frames_sent += 1;
        if !self.ports[from].is_online() || frame.len() < HEADER_BYTES {
            self.statistics.lost_offline += 1;
            return;
        }
        for observer in &mut self.observers {
            observer(&frame);
        }
        let destination = &frame[..6];
        let group = destination[0] & 1 == 1;
        let receivers: Vec<usize> = (0..self.ports.len())
            .filter(|&index| index != from && self.ports[index].attached && (group || self.ports[index].mac == destination))
            .collect();
        if receivers.is_empty() {
            self.statistics.undeliverable += 1;
        }
        for receiver in receivers {
            self.carry(receiver, frame.clone());
        }
    }

    /// Takes one frame to `receiver` through the fault plan.
    fn carry(&mut self, receiver: usize, mut frame: Vec<u8>) {
        let [drop, corrupt, position, duplicate, reorder] = core::array::from_fn(|_| self.random.next_u32());
        if strikes(drop, self.plan.drop_per_million) {
            self.faults.dropped += 1;
            return;
        }
        if strikes(corrupt, self.plan.corrupt_per_million) && frame.len() > HEADER_BYTES {
            let bits = (frame.len() - HEADER_BYTES) * 8;
            let bit = HEADER_BYTES * 8 + position as usize % bits;
            frame[bit / 8] ^= 1 << (bit % 8);
            self.faults.corrupted += 1;
        }
        if strikes(reorder, self.plan.reorder_per_million) && self.ports[receiver].held.is_none() {
            self.ports[receiver].held = Some(frame);
            self.faults.reordered += 1;
            return;
        }
        if strikes(duplicate, self.plan.duplicate_per_million) {
            self.faults.duplicated += 1;
            self.deliver(receiver, frame.clone());
        }
        self.deliver(receiver, frame);
        if let Some(held) = self.ports[receiver].held.take() {
            self.deliver(receiver, held);
        }
    }

    fn deliver(&mut self, receiver: usize, frame: Vec<u8>) {
        let port = &mut self.ports[receiver];
        if !port.is_online() {
            self.statistics.lost_offline += 1;
            return;
        }
        if port.inbox.len() >= INBOX_FRAMES {
            self.statistics.overflowed += 1;
            return;
        }
        self.digest.update(time_driver::now().to_le_bytes());
        self.digest.update((receiver as u32).to_le_bytes());
        self.digest.update((frame.len() as u32).to_le_bytes());
        self.digest.update(&frame);
        port.inbox.push_back(frame);
        self.statistics.frames_delivered += 1;
        if let Some(waker) = port.receive_waker.take() {
            waker.wake();
        }
    }
}

/// An Ethernet segment (clones share it).
#[derive(Clone)]
pub struct Segment {
    state: Rc<RefCell<SegmentState>>,
}

impl Segment {
    /// A segment without ports whose faults come from stream `index` of the network domain
    /// under `seed` (number the segments of one simulation 0, 1, …).
    pub fn new(seed: u64, index: u32, plan: FaultPlan) -> Self {
        Self {
            state: Rc::new(RefCell::new(SegmentState {
                ports: Vec::new(),
                observers: Vec::new(),
                plan,
                random: seeds::stream(seed, Domain::Network, index),
                faults: FaultCounts::default(),
                statistics: SegmentStatistics::default(),
                digest: Sha256::new(),
            })),
        }
    }

    /// Plugs in a port with `mac` (always powered: a simulated peer) and returns its driver.
    pub fn attach(&self, mac: [u8; 6]) -> SimEthernet {
        self.attach_port(mac, None)
    }

    pub(crate) fn attach_port(&self, mac: [u8; 6], power: Option<DevicePower>) -> SimEthernet {
        let mut state = self.state.borrow_mut();
        let port = PortId(state.ports.len());
        state.ports.push(Port {
            mac,
            inbox: VecDeque::new(),
            held: None,
            receive_waker: None,
            link_waker: None,
            attached: true,
            link_up: true,
            power,
        });
        SimEthernet { segment: self.clone(), port, mac }
    }

    /// Unplugs a port for good: frames to it are lost, its driver sees the link down.
    pub fn unplug(&self, port: PortId) {
        let mut state = self.state.borrow_mut();
        let port = &mut state.ports[port.0];
        port.attached = false;
        port.inbox.clear();
        port.held = None;
        port.wake_all();
    }

    /// Takes a port's link down (a fault: counted) and loses what was queued for it.
    pub fn reset_link(&self, port: PortId) {
        let mut state = self.state.borrow_mut();
        state.faults.link_resets += 1;
        let port = &mut state.ports[port.0];
        port.link_up = false;
        port.inbox.clear();
        port.held = None;
        port.wake_all();
    }

    /// Brings a port's link up or takes it down (not counted as a fault).
    pub fn set_link(&self, port: PortId, up: bool) {
        let mut state = self.state.borrow_mut();
        let port = &mut state.ports[port.0];
        port.link_up = up;
        port.wake_all();
    }

    /// Delivers the frames held back for reordering (e.g. before checking that a run is over).
    pub fn release_held(&self) {
        let mut state = self.state.borrow_mut();
        for receiver in 0..state.ports.len() {
            if let Some(held) = state.ports[receiver].held.take() {
                state.deliver(receiver, held);
            }
        }
    }

    /// Calls `observer` with every frame a port sends from now on (as sent: before the faults
    /// strike it on its way to a receiver), in order. It must not call back into the segment.
    pub fn observe(&self, observer: impl FnMut(&[u8]) + 'static) {
        self.state.borrow_mut().observers.push(Box::new(observer));
    }

    /// Changes the fault plan from the next frame on.
    pub fn set_faults(&self, plan: FaultPlan) {
        self.state.borrow_mut().plan = plan;
    }

    /// The faults injected so far.
    pub fn faults(&self) -> FaultCounts {
        self.state.borrow().faults
    }

    /// What the segment carried so far.
    pub fn statistics(&self) -> SegmentStatistics {
        self.state.borrow().statistics
    }

    /// SHA-256 over every delivery so far (its time, receiving port and bytes): equal for
    /// two runs exactly when they delivered the same frames at the same times.
    pub fn digest(&self) -> [u8; 32] {
        self.state.borrow().digest.clone().finalize().into()
    }

    fn send(&self, from: PortId, frame: Vec<u8>) {
        self.state.borrow_mut().send(from.0, frame);
    }
}

/// A port's `embassy-net-driver` driver.
pub struct SimEthernet {
    segment: Segment,
    port: PortId,
    mac: [u8; 6],
}

impl SimEthernet {
    /// The port on its segment (for [`Segment::reset_link`] and friends).
    pub fn port(&self) -> PortId {
        self.port
    }

    /// The port's MAC address.
    pub fn mac_address(&self) -> [u8; 6] {
        self.mac
    }
}

/// A received frame.
pub struct SimRxToken {
    frame: Vec<u8>,
}

impl RxToken for SimRxToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, f: F) -> R {
        f(&mut self.frame)
    }
}

/// Room for a frame to send (the segment never refuses one: it is delivered or lost at once).
pub struct SimTxToken {
    segment: Segment,
    port: PortId,
}

impl TxToken for SimTxToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, length: usize, f: F) -> R {
        let mut frame = vec![0; length];
        let result = f(&mut frame);
        self.segment.send(self.port, frame);
        result
    }
}

impl Driver for SimEthernet {
    type RxToken<'a>
        = SimRxToken
    where
        Self: 'a;
    type TxToken<'a>
        = SimTxToken
    where
        Self: 'a;

    fn receive(&mut self, context: &mut Context) -> Option<(SimRxToken, SimTxToken)> {
        let mut state = self.segment.state.borrow_mut();
        let port = &mut state.ports[self.port.0];
        let frame = if port.is_online() { port.inbox.pop_front() } else { None };
        match frame {
            Some(frame) => Some((SimRxToken { frame }, SimTxToken { segment: self.segment.clone(), port: self.port })),
            None => {
                port.receive_waker = Some(context.waker().clone());
                None
            }
        }
    }

    fn transmit(&mut self, _context: &mut Context) -> Option<SimTxToken> {
        Some(SimTxToken { segment: self.segment.clone(), port: self.port })
    }

    fn link_state(&mut self, context: &mut Context) -> LinkState {
        let mut state = self.segment.state.borrow_mut();
        let port = &mut state.ports[self.port.0];
        port.link_waker = Some(context.waker().clone());
        if port.is_online() {
            LinkState::Up
        } else {
            LinkState::Down
        }
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::default();
        capabilities.max_transmission_unit = MTU;
        capabilities
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observer_sees_every_frame_sent_as_sent_even_those_the_faults_drop() {
        let segment = Segment::new(1, 0, FaultPlan { drop_per_million: 1_000_000, ..FaultPlan::NONE });
        let sender = segment.attach([2, 0, 0, 0, 0, 1]);
        segment.attach([2, 0, 0, 0, 0, 2]);
        let seen: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
        let tap = seen.clone();
        segment.observe(move |frame| tap.borrow_mut().push(frame.to_vec()));
        let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        frame.extend_from_slice(b"payload");
        segment.send(sender.port(), frame.clone());
        assert_eq!(*seen.borrow(), [frame]);
        assert_eq!(segment.faults().dropped, 1, "the receiver never got it");
        assert_eq!(segment.statistics().frames_delivered, 0);
    }
}
