//! Which peers count as the LAN: until provisioning configures LAN prefixes, the subnet
//! of the appliance's own interface.
//!
//! Owns: nothing (a pure helper). Calls: nothing.

use embassy_net::{IpAddress, Stack};

/// Whether `peer` is on the appliance's own IPv4 subnet.
pub fn is_lan_peer(stack: Stack<'_>, peer: IpAddress) -> bool {
    let Some(config) = stack.config_v4() else {
        return false;
    };
    #[allow(irrefutable_let_patterns)]
    let IpAddress::Ipv4(peer) = peer
    else {
        return false;
    };
    config.address.contains_addr(&peer)
}
