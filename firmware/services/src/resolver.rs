//! DNS lookups for the firmware (smarthost, backup MX, time servers, DynDNS checks): the I/O
//! driver of [`homemx_dns::Lookup`], which owns the DNS logic (the query, the retransmission
//! schedule over the servers DHCP named, which datagrams to believe, the answer; tested on the
//! host, forged answers included). Here only: one embassy-net UDP socket bound to a random source
//! port, a random ID, the clock. Calls nothing but the network stack and [`DerivedRandom`].
//!
//! Lookups are serialised (the appliance needs a handful per hour), so the socket's buffers and
//! the lookup's state (2.6 KB, most of it room for the answer) live once, in [`RESOLVER`], not in
//! the future of every task that resolves a name. They are written at [`init`] into a
//! [`StaticCell`] (zero-initialised RAM), so they take no room in flash as a static's initial
//! value would.
//!
//! Owns: the one DNS socket and lookup state (`RESOLVER`). Calls: `random`.

use core::net::IpAddr;

use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{IpEndpoint, Ipv4Address, Stack};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::mutex::Mutex;
use embassy_time::{with_deadline, Instant};
use homemx_dns::message::{Answer, RecordType, MAX_QUERY_LEN};
use homemx_dns::resolver::{DNS_PORT, MAX_SERVERS};
use homemx_dns::{source_port, DnsError, Lookup};
use static_cell::StaticCell;

use crate::random::DerivedRandom;

/// Largest DNS reply taken (plain DNS over UDP: 512 octets without EDNS); a longer datagram
/// does not fit the socket's buffer and is dropped by the stack.
const REPLY_CAPACITY: usize = 512;

/// What the one lookup at a time needs.
struct Resolver {
    /// For IDs and source ports: an off-path spoofer has to guess both.
    random: DerivedRandom,
    /// The running (or last) lookup, restarted in place for each name (never built on the
    /// stack: its 2.6 KB temporaries made `lookup`'s frame 8.6 KB, on the deepest stack path
    /// measured, the delivery task's name lookups).
    lookup: Lookup,
    rx_meta: [PacketMetadata; 2],
    tx_meta: [PacketMetadata; 2],
    rx_buffer: [u8; REPLY_CAPACITY],
    tx_buffer: [u8; MAX_QUERY_LEN],
}

/// The resolver, once [`init`] gave it its random stream.
static RESOLVER: Mutex<CriticalSectionRawMutex, Option<&'static mut Resolver>> = Mutex::new(None);

/// Gives the resolver its random stream (IDs and source ports must be unpredictable). Once.
pub async fn init(random: DerivedRandom) {
    static STATE: StaticCell<Resolver> = StaticCell::new();
    let mut resolver = RESOLVER.lock().await;
    *resolver = Some(STATE.init_with(|| Resolver {
        random,
        lookup: Lookup::idle(),
        rx_meta: [PacketMetadata::EMPTY; 2],
        tx_meta: [PacketMetadata::EMPTY; 2],
        rx_buffer: [0; REPLY_CAPACITY],
        tx_buffer: [0; MAX_QUERY_LEN],
    }));
}

fn now_ms() -> u64 {
    Instant::now().as_millis()
}

/// The resolver, locked, with a finished lookup in it (see [`run`]).
type Finished = embassy_sync::mutex::MutexGuard<'static, CriticalSectionRawMutex, Option<&'static mut Resolver>>;

/// Runs a lookup of `name` to its end and returns the resolver, still locked, with the outcome
/// in its lookup: callers read it there ([`Lookup::poll_outcome`]) instead of copying the
/// answer (2.1 KB) onto the stack of the task that resolves.
async fn run(stack: Stack<'static>, name: &str, record_type: RecordType) -> Result<Finished, DnsError> {
    let mut guard = RESOLVER.lock().await;
    {
        let Resolver { random, lookup, rx_meta, tx_meta, rx_buffer, tx_buffer } = guard.as_mut().ok_or(DnsError::NoServers)?;
        let servers: heapless::Vec<[u8; 4], MAX_SERVERS> = stack
            .config_v4()
            .map(|config| config.dns_servers.iter().take(MAX_SERVERS).map(|server| server.octets()).collect())
            .unwrap_or_default();
        let entropy = random.next_u64();
        lookup.restart(name, record_type, (entropy >> 16) as u16, &servers, now_ms())?;
        let mut socket = UdpSocket::new(stack, rx_meta, rx_buffer, tx_meta, tx_buffer);
        socket.bind(source_port(entropy as u16)).map_err(|_| DnsError::NoServers)?;
        loop {
            while let Some((server, datagram)) = lookup.poll_transmit(now_ms()) {
                // One that cannot be sent (no route yet) goes unanswered: the schedule sends again.
                let _ = socket.send_to(datagram, IpEndpoint::new(Ipv4Address::from(server).into(), DNS_PORT)).await;
            }
            if lookup.poll_outcome(now_ms()).is_some() {
                if lookup.ignored_datagrams() > 0 {
                    defmt::warn!("dns: {=u32} datagrams for {=str} were not answers to our query (dropped)", lookup.ignored_datagrams(), name);
                }
                break;
            }
            // Running lookups always have a next instant; `None` only after the result was taken.
            let Some(at) = lookup.next_timeout_ms() else {
                return Err(DnsError::Timeout);
            };
            let receive = socket.recv_from_with(|bytes, metadata| {
                if let IpAddr::V4(from) = IpAddr::from(metadata.endpoint.addr) {
                    lookup.handle_datagram(from.octets(), metadata.endpoint.port, bytes, now_ms());
                }
            });
            // Timed out: the next round polls the schedule.
            let _ = with_deadline(Instant::from_millis(at), receive).await;
        }
    }
    Ok(guard)
}

/// The finished lookup of a guard from [`run`].
fn finished(guard: &mut Finished) -> Result<&mut Lookup, DnsError> {
    guard.as_mut().map(|resolver| &mut resolver.lookup).ok_or(DnsError::NoServers)
}

/// Looks `name` up; NXDOMAIN and NODATA are answers, not errors.
pub async fn lookup(stack: Stack<'static>, name: &str, record_type: RecordType) -> Result<Answer, DnsError> {
    let mut guard = run(stack, name, record_type).await?;
    finished(&mut guard)?.poll_result(now_ms()).unwrap_or(Err(DnsError::Timeout))
}

/// The IPv4 addresses of `name` (at most [`homemx_dns::message::MAX_ADDRESSES`]), read in
/// place from the finished lookup (no copy of the whole answer in the caller's future or poll
/// frame); empty when the name or its A records do not exist.
pub async fn lookup_addresses(stack: Stack<'static>, name: &str) -> Result<heapless::Vec<[u8; 4], { homemx_dns::message::MAX_ADDRESSES }>, DnsError> {
    let mut guard = run(stack, name, RecordType::A).await?;
    match finished(&mut guard)?.poll_outcome(now_ms()) {
        Some(Ok(Answer::A { records, .. })) => Ok(records.iter().map(|record| record.address).collect()),
        Some(Ok(Answer::NameError | Answer::NoData)) => Ok(heapless::Vec::new()),
        Some(Ok(_)) => Err(DnsError::InvalidRecord),
        Some(Err(error)) => Err(error),
        None => Err(DnsError::Timeout),
    }
}

/// The first IPv4 address of `name`, read in place from the finished lookup.
pub async fn resolve_address(stack: Stack<'static>, name: &str) -> Result<[u8; 4], DnsError> {
    let mut guard = run(stack, name, RecordType::A).await?;
    match finished(&mut guard)?.poll_outcome(now_ms()) {
        Some(Ok(Answer::A { records, .. })) => records.first().map(|record| record.address).ok_or(DnsError::InvalidRecord),
        Some(Ok(_)) => Err(DnsError::InvalidRecord),
        Some(Err(error)) => Err(error),
        None => Err(DnsError::Timeout),
    }
}
