//! UDP echo (port 7) for LAN peers only: a diagnostic that proves UDP works both ways.
//! WAN peers get nothing back (no reflection, no amplification).
//!
//! Owns: the UDP echo task and its socket. Calls: `lan`.

use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::Stack;

use crate::lan::is_lan_peer;

/// The echo port.
pub const ECHO_PORT: u16 = 7;

/// Largest datagram echoed (a longer one is dropped): a probe, not a data path.
const DATAGRAM_MAX: usize = 512;

/// Echoes one datagram at a time: its socket buffers hold one largest datagram each way (with
/// the copy the reply is sent from, 1.6 KB of the task's future).
#[embassy_executor::task]
pub async fn udp_echo_task(stack: Stack<'static>) -> ! {
    let mut receive_metadata = [PacketMetadata::EMPTY; 2];
    let mut transmit_metadata = [PacketMetadata::EMPTY; 2];
    let mut receive_buffer = [0u8; DATAGRAM_MAX];
    let mut transmit_buffer = [0u8; DATAGRAM_MAX];
    let mut socket = UdpSocket::new(
        stack,
        &mut receive_metadata,
        &mut receive_buffer,
        &mut transmit_metadata,
        &mut transmit_buffer,
    );
    socket.bind(ECHO_PORT).expect("bind UDP echo");
    let mut datagram = [0u8; DATAGRAM_MAX];
    loop {
        let Ok((length, metadata)) = socket.recv_from(&mut datagram).await else {
            continue;
        };
        if !is_lan_peer(stack, metadata.endpoint.addr) {
            defmt::warn!("udp echo: ignored datagram from non-LAN {}", metadata.endpoint);
            continue;
        }
        if socket.send_to(&datagram[..length], metadata.endpoint).await.is_err() {
            defmt::warn!("udp echo: reply to {} failed", metadata.endpoint);
        }
    }
}
