//! The simulation's one seed, split into independent ChaCha20 streams, one per use.
//!
//! Every random choice of a run (fault draws on the Ethernet segment, the bits a power cut
//! tears, the device's entropy at each boot, the simulator's own choices) comes from a
//! stream derived here from [`crate::SimConfig::seed`], so a run is reproducible byte for
//! byte. Streams are keyed by ([`Domain`], index) and do not depend on the order in which
//! they are created: adding a draw in one part does not shift the draws of another.
//!
//! Owns nothing; calls only `rand_chacha`.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// What a stream is for; each domain gets its own ChaCha20 stream number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// The fault draws of an Ethernet segment (index: the segment's number).
    Network,
    /// The device's random bytes (index: the boot number).
    DeviceEntropy,
    /// The bits a torn flash operation leaves (index: the cut's number).
    FlashTear,
    /// The simulated peers' random bytes, e.g. their network stacks' seeds (index: the peer).
    Peer,
    /// Free for the simulator's own choices (cut points, schedules; index: its choice).
    Simulator,
    /// The device's chip key secret (index 0: one chip per seed).
    ChipKey,
}

impl Domain {
    const fn number(self) -> u64 {
        match self {
            Self::Network => 1,
            Self::DeviceEntropy => 2,
            Self::FlashTear => 3,
            Self::Peer => 4,
            Self::Simulator => 5,
            Self::ChipKey => 6,
        }
    }
}

/// The ChaCha20 stream of `(domain, index)` under `seed`.
pub fn stream(seed: u64, domain: Domain, index: u32) -> ChaCha20Rng {
    let mut random = ChaCha20Rng::seed_from_u64(seed);
    random.set_stream(domain.number() << 32 | index as u64);
    random
}

/// One 64-bit draw from the stream of `(domain, index)` (a seed for something else).
pub fn draw_u64(seed: u64, domain: Domain, index: u32) -> u64 {
    use rand_core::RngCore;
    stream(seed, domain, index).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::RngCore;

    #[test]
    fn streams_are_reproducible_and_independent() {
        assert_eq!(stream(7, Domain::Network, 0).next_u64(), stream(7, Domain::Network, 0).next_u64());
        assert_ne!(stream(7, Domain::Network, 0).next_u64(), stream(8, Domain::Network, 0).next_u64());
        assert_ne!(stream(7, Domain::Network, 0).next_u64(), stream(7, Domain::Network, 1).next_u64());
        assert_ne!(stream(7, Domain::Network, 0).next_u64(), stream(7, Domain::FlashTear, 0).next_u64());
    }
}
