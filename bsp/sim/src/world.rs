//! What outlives a boot of the simulated device, and each boot's parts.
//!
//! A [`World`] holds the device's flash chip and the Ethernet segment it is plugged into,
//! both made from [`SimConfig`] (one seed for everything). [`World::boot`] powers the
//! previous boot off (its port unplugged, its console and flash dead), restores the flash's
//! power and hands out the next boot's [`Parts`] (for the services) with the
//! [`DeviceHandles`] the simulator keeps (the power rail, the console's other end, the port).
//! The simulated peers attach their own stacks to [`World::segment`].
//!
//! Owns the flash model, the segment and the boot count. Calls: every part's constructor.

use homemx_board::{BoardParts, ResetCause};

use crate::entropy::SimEntropy;
use crate::ethernet::{FaultPlan, PortId, Segment};
use crate::flash::{CutMode, FlashModel, SimFlash};
use crate::power::DevicePower;
use crate::reset::SimReset;
use crate::seeds::{self, Domain};
use crate::serial::{self, HostSerial};
use crate::{Parts, BOARD_NAME, FLASH_MAP};

/// How a simulation is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// The one seed every random choice of the run derives from (see [`crate::seeds`]).
    pub seed: u64,
    /// The device's MAC address.
    pub mac_address: [u8; 6],
    /// Faults on the device's segment (stream 0 of the network domain).
    pub faults: FaultPlan,
    /// Bytes the console pipe holds in each direction.
    pub console_capacity: usize,
}

impl SimConfig {
    /// A device with MAC `02:00:00:00:00:01` on a fault-free segment, 4 KiB console buffers.
    pub const fn new(seed: u64) -> Self {
        Self { seed, mac_address: [0x02, 0, 0, 0, 0, 0x01], faults: FaultPlan::NONE, console_capacity: 4096 }
    }
}

/// The simulator's ends of one boot's parts.
pub struct DeviceHandles {
    /// The boot's number (1 is the first).
    pub boot: u32,
    /// The boot's power rail.
    pub power: DevicePower,
    /// The console as the owner's host sees it.
    pub console: HostSerial,
    /// The device's port on the segment.
    pub port: PortId,
}

/// The device's flash and network, across boots.
pub struct World {
    config: SimConfig,
    flash: FlashModel,
    segment: Segment,
    boots: u32,
    cuts: u32,
    current: Option<(DevicePower, PortId)>,
}

impl World {
    /// A world with an erased flash of [`FLASH_MAP`]'s size.
    pub fn new(config: SimConfig) -> Self {
        Self::with_flash(config, FlashModel::new((FLASH_MAP.key_store_bytes() + FLASH_MAP.data_bytes()) as usize))
    }

    /// A world whose flash holds `image` (e.g. a snapshot of another run), padded with `0xFF`.
    pub fn with_flash_image(config: SimConfig, image: &[u8]) -> Self {
        Self::with_flash(config, FlashModel::from_image((FLASH_MAP.key_store_bytes() + FLASH_MAP.data_bytes()) as usize, image))
    }

    /// A world whose device has already booted `boots` times (in another process, whose flash
    /// `image` it takes over): the next boot's entropy and tear streams go on from there, as a
    /// simulation that re-executes itself after a power cut needs.
    pub fn after_boots(config: SimConfig, image: &[u8], boots: u32) -> Self {
        let mut world = Self::with_flash_image(config, image);
        world.boots = boots;
        world.cuts = boots;
        world
    }

    fn with_flash(config: SimConfig, flash: FlashModel) -> Self {
        let segment = Segment::new(config.seed, 0, config.faults);
        Self { config, flash, segment, boots: 0, cuts: 0, current: None }
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The flash chip (snapshots, counters, the operation log, tampering).
    pub fn flash(&self) -> &FlashModel {
        &self.flash
    }

    /// The Ethernet segment: the peers attach here; faults and their counts.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Boots so far.
    pub fn boots(&self) -> u32 {
        self.boots
    }

    /// Powers the previous boot off (if any), restores the flash's power (disarming a cut
    /// that has not struck) and returns the next boot's parts, which report `cause`.
    pub fn boot(&mut self, cause: ResetCause) -> (Parts, DeviceHandles) {
        if let Some((power, port)) = self.current.take() {
            power.switch_off();
            self.segment.unplug(port);
        }
        self.flash.restore_power();
        self.boots += 1;
        let flash = self.flash.clone();
        let power = DevicePower::new(move || flash.power_is_cut());
        let network = self.segment.attach_port(self.config.mac_address, Some(power.clone()));
        let port = network.port();
        let (serial, console) = serial::pipe(self.config.console_capacity, power.clone());
        self.current = Some((power.clone(), port));
        let parts = BoardParts {
            name: BOARD_NAME,
            network,
            mac_address: self.config.mac_address,
            flash: SimFlash::window(self.flash.clone(), power.clone(), FLASH_MAP.key_store_bytes(), FLASH_MAP.data_bytes()),
            key_flash: SimFlash::window(self.flash.clone(), power.clone(), 0, FLASH_MAP.key_store_bytes()),
            serial,
            entropy: SimEntropy::new(self.config.seed, self.boots),
            reset: SimReset { boot: self.boots, cause },
            tamper: homemx_board::NoTamperLoop,
            chip_key: crate::chip_key::SimChipKey::new(self.config.seed),
        };
        (parts, DeviceHandles { boot: self.boots, power, console, port })
    }

    /// Cuts the device's power at its `operation`-th flash program or erase from now (1: the
    /// next): that operation is left untouched, completed or torn as `mode` says, the bits of a
    /// tear drawn from the seed (one stream per cut). Arm it after [`World::boot`], which
    /// disarms a pending cut.
    pub fn cut_flash_power_at(&mut self, operation: u64, mode: CutMode) {
        let tear_seed = seeds::draw_u64(self.config.seed, Domain::FlashTear, self.cuts);
        self.cuts += 1;
        self.flash.cut_power_at(operation, mode, tear_seed);
    }
}
