//! The wall clock: Unix time learned by SNTP (homemx-dns's `sntp`), kept as an offset from
//! the monotonic embassy clock. Until the first good answer the time is unknown: `Received:`
//! dates then count from the epoch plus uptime (as before SNTP existed), and every provider
//! connection verified by a CA anchor waits (certificate validity cannot be checked without
//! the time; a pinned key needs no time).
//!
//! Owns: the wall clock's offset and the SNTP loop with its socket (run by the start task once
//! the board is up, `crate::run`). Calls: `alerts`, `event_log`,
//! `mail_settings`, `random`, `resolver`.

use core::cell::Cell;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;

/// (Unix milliseconds at monotonic zero, monotonic ms of the last synchronisation); `None`
/// until the first good answer. (No 64-bit atomics on the Cortex-M4.)
static CLOCK: Mutex<CriticalSectionRawMutex, Cell<Option<(u64, u64)>>> = Mutex::new(Cell::new(None));

/// Sets the clock: at monotonic `monotonic_milliseconds` it was `unix_milliseconds`.
pub fn set(unix_milliseconds: u64, monotonic_milliseconds: u64) {
    let base = unix_milliseconds.saturating_sub(monotonic_milliseconds);
    CLOCK.lock(|clock| clock.set(Some((base, monotonic_milliseconds))));
}

/// Unix seconds now, if the time is known.
pub fn unix_seconds() -> Option<u64> {
    let (base, _) = CLOCK.lock(Cell::get)?;
    Some((base + embassy_time::Instant::now().as_millis()) / 1000)
}

/// Between successful synchronisations.
const RESYNC: embassy_time::Duration = embassy_time::Duration::from_secs(3600);
/// After a failed attempt.
const RETRY: embassy_time::Duration = embassy_time::Duration::from_secs(20);

/// Keeps the wall clock set: asks the configured SNTP servers (or the default gateway) at
/// start, hourly, and every 20 s while the time is unknown or the last attempt failed. Run by
/// the start task, as its last step, once the network has its address (`crate::run`): a task
/// of its own cost 1,432 B of RAM beside the start task's, idle after the boot.
pub async fn keep_time(stack: embassy_net::Stack<'static>, mut random: crate::random::DerivedRandom) -> ! {
    loop {
        let synced = synchronise(stack, &mut random).await;
        embassy_time::Timer::after(if synced { RESYNC } else { RETRY }).await;
    }
}

async fn synchronise(stack: embassy_net::Stack<'static>, random: &mut crate::random::DerivedRandom) -> bool {
    use homemx_dns::sntp::{build_request, parse_reply, NtpTimestamp, WallClock as Exchange, NTP_PORT, PACKET_LEN};
    let servers = crate::mail_settings::read(|current| current.map(|settings| settings.time_servers.clone()))
        .unwrap_or_default();
    let mut addresses: heapless::Vec<(embassy_net::Ipv4Address, bool), 2> = heapless::Vec::new();
    for server in &servers {
        match crate::resolver::resolve_address(stack, server.as_str()).await {
            Ok(address) => {
                let _ = addresses.push((embassy_net::Ipv4Address::from(address), true));
            }
            Err(error) => defmt::warn!("time: cannot resolve {=str}: {}", server.as_str(), defmt::Debug2Format(&error)),
        }
    }
    if servers.is_empty() {
        if let Some(gateway) = stack.config_v4().and_then(|config| config.gateway) {
            let _ = addresses.push((gateway, false));
        }
    }
    let mut rx_meta = [embassy_net::udp::PacketMetadata::EMPTY; 2];
    let mut tx_meta = [embassy_net::udp::PacketMetadata::EMPTY; 2];
    let mut rx_buffer = [0u8; 96];
    let mut tx_buffer = [0u8; PACKET_LEN];
    let mut socket = embassy_net::udp::UdpSocket::new(stack, &mut rx_meta, &mut rx_buffer, &mut tx_meta, &mut tx_buffer);
    let port = homemx_dns::source_port(random.next_u64() as u16);
    if socket.bind(port).is_err() {
        return false;
    }
    for (address, configured) in addresses {
        let endpoint = embassy_net::IpEndpoint::new(address.into(), NTP_PORT);
        // The transmit timestamp is a random nonce the server must echo (RFC 5905 spoofing
        // defence); our own time is not sent.
        let nonce = NtpTimestamp::from_bits(random.next_u64());
        let mut request = [0u8; PACKET_LEN];
        build_request(nonce, &mut request);
        let sent = embassy_time::Instant::now().as_millis();
        if socket.send_to(&request, endpoint).await.is_err() {
            continue;
        }
        let mut reply = [0u8; 96];
        let deadline = embassy_time::Instant::now() + embassy_time::Duration::from_secs(3);
        while let Ok(Ok((count, from))) =
            embassy_time::with_timeout(deadline.saturating_duration_since(embassy_time::Instant::now()), socket.recv_from(&mut reply)).await
        {
            if from.endpoint != endpoint {
                continue;
            }
            let received = embassy_time::Instant::now().as_millis();
            match parse_reply(&reply[..count], nonce) {
                Ok(server_time) => {
                    let exchange = Exchange::from_exchange(sent, received, &server_time);
                    let unix_ms = exchange.unix_ms(received);
                    if !Exchange::is_plausible(unix_ms / 1000) {
                        defmt::warn!("time: {} answered an implausible time; ignored", endpoint);
                        break;
                    }
                    let first = unix_seconds().is_none();
                    set(unix_ms, received);
                    if first {
                        crate::event_info!(
                            "time: clock set from {} ({}), {} s since 1970, round trip {} ms",
                            endpoint,
                            if configured { "configured server" } else { "default gateway" },
                            unix_ms / 1000,
                            exchange.round_trip_ms()
                        );
                    }
                    crate::alerts::clear(homemx_status::alert::AlertKind::PeerUnreachable(homemx_status::alert::Peer::Time));
                    return true;
                }
                Err(error) => {
                    defmt::warn!("time: reply from {} refused: {}", endpoint, defmt::Debug2Format(&error));
                    break;
                }
            }
        }
    }
    false
}
