//! The LAN gateway's SNTP server (RFC 4330), so the device's wall clock is set as on a real
//! LAN: with no time server configured the device asks its default gateway (10.0.0.1, the
//! lease's router) on UDP 123. The simulated wall clock is [`BASE_UNIX_SECONDS`]
//! (2026-12-01T00:00:00Z, inside the fixtures' validity) plus the simulated time, so the
//! provider's certificate dates check, and a clock jump moves both sides alike.
//!
//! [`answer`] is the sans-I/O core (a request in, the reply out); [`serve`] runs it on a UDP
//! socket of the peers' stack. Written from the RFC, independently of the device's client; the
//! tests check it against that client's parser.
//!
//! Owns: the simulated wall clock. Calls: nothing.

use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::Stack;
use homemx_dns::sntp::{NtpTimestamp, NTP_PORT, PACKET_LEN};

/// The simulated wall clock at simulated time zero: 2026-12-01T00:00:00Z.
pub const BASE_UNIX_SECONDS: u64 = 1_796_083_200;

/// Unix milliseconds now on the simulated wall clock.
pub fn unix_ms_now() -> u64 {
    BASE_UNIX_SECONDS * 1000 + embassy_time::Instant::now().as_millis()
}

/// The reply to the client request `request` at `unix_ms`, or `None` if it is no client
/// request (mode 3, version 1 to 4, 48 bytes or more).
pub fn answer(request: &[u8], unix_ms: u64) -> Option<[u8; PACKET_LEN]> {
    let first = *request.first()?;
    let (version, mode) = (first >> 3 & 7, first & 7);
    if request.len() < PACKET_LEN || mode != 3 || !(1..=4).contains(&version) {
        return None;
    }
    let now = NtpTimestamp::from_unix_ms(unix_ms).to_bits().to_be_bytes();
    let mut reply = [0u8; PACKET_LEN];
    // LI 0, the client's version, mode 4 (server); stratum 1, the client's poll, precision 2^-20.
    reply[0] = version << 3 | 4;
    reply[1] = 1;
    reply[2] = request[2];
    reply[3] = (-20i8) as u8;
    reply[12..16].copy_from_slice(b"SIM\0");
    reply[16..24].copy_from_slice(&now);
    // Origin: the client's transmit timestamp (its nonce); receive and transmit: now.
    reply[24..32].copy_from_slice(&request[40..48]);
    reply[32..40].copy_from_slice(&now);
    reply[40..48].copy_from_slice(&now);
    Some(reply)
}

/// Answers SNTP requests on port 123 of `stack` for ever.
pub async fn serve(stack: Stack<'static>) -> ! {
    let mut receive_metadata = [PacketMetadata::EMPTY; 4];
    let mut transmit_metadata = [PacketMetadata::EMPTY; 4];
    let mut receive_buffer = [0u8; 1024];
    let mut transmit_buffer = [0u8; 1024];
    let mut socket = UdpSocket::new(stack, &mut receive_metadata, &mut receive_buffer, &mut transmit_metadata, &mut transmit_buffer);
    socket.bind(NTP_PORT).expect("a fresh socket binds");
    let mut request = [0u8; 512];
    loop {
        let Ok((length, from)) = socket.recv_from(&mut request).await else { continue };
        if let Some(reply) = answer(&request[..length], unix_ms_now()) {
            // A full transmit buffer only loses this reply; the client asks again.
            let _ = socket.send_to(&reply, from.endpoint).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use homemx_dns::sntp::{build_request, parse_reply, WallClock};

    #[test]
    fn the_device_client_takes_the_reply_and_reads_the_time() {
        let nonce = NtpTimestamp::from_bits(0x1234_5678_9abc_def0);
        let mut request = [0u8; PACKET_LEN];
        build_request(nonce, &mut request);
        let unix_ms = BASE_UNIX_SECONDS * 1000 + 4_321;
        let reply = answer(&request, unix_ms).expect("a client request is answered");
        let server_time = parse_reply(&reply, nonce).expect("the device's client accepts it");
        let clock = WallClock::from_exchange(1000, 1000, &server_time);
        assert_eq!(clock.unix_ms(1000), unix_ms);
        assert!(WallClock::is_plausible(unix_ms / 1000));
        assert!(parse_reply(&reply, NtpTimestamp::from_bits(1)).is_err(), "another request's nonce is refused");
    }

    #[test]
    fn only_client_requests_are_answered() {
        let mut request = [0u8; PACKET_LEN];
        build_request(NtpTimestamp::from_bits(7), &mut request);
        assert!(answer(&request[..47], 0).is_none(), "too short");
        let mut server_mode = request;
        server_mode[0] = 4 << 3 | 4;
        assert!(answer(&server_mode, 0).is_none(), "a server's packet");
    }
}
