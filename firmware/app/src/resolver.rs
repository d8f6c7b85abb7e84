//! DNS lookups for the firmware (smarthost, backup MX, time server, DynDNS checks): A, MX and
//! TXT over one embassy-net UDP socket, asking the servers DHCP named. Messages are built and
//! checked by homemx-dns (random ID, our question echoed, compression bounded); replies from
//! anyone but the server asked, or for another ID or question, are dropped (spoofing defence).
//! Lookups are serialised: the appliance needs a handful per hour.

use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{IpAddress, IpEndpoint, Stack};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::mutex::Mutex;
use embassy_time::{with_timeout, Duration, Instant};
use homemx_dns::message::{build_query, parse_response, Answer, RecordType, MAX_QUERY_LEN};
use homemx_dns::DnsError;

use crate::random::DerivedRandom;

/// Largest DNS reply read (plain DNS over UDP: 512 octets without EDNS).
const REPLY_CAPACITY: usize = 512;
/// Waits per attempt; one attempt per server per round.
const ATTEMPT_TIMEOUTS: [Duration; 3] = [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)];

/// The random source for query IDs and source ports, set at start.
static LOOKUP: Mutex<CriticalSectionRawMutex, Option<DerivedRandom>> = Mutex::new(None);

/// Gives the resolver its random stream (IDs and source ports must be unpredictable).
pub async fn init(random: DerivedRandom) {
    *LOOKUP.lock().await = Some(random);
}

/// Counts of lookups, for the status page and the figures.
pub static QUERIES_SENT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Looks `name` up; NXDOMAIN and NODATA are answers, not errors.
pub async fn lookup(stack: Stack<'static>, name: &str, record_type: RecordType) -> Result<Answer, DnsError> {
    let mut guard = LOOKUP.lock().await;
    let random = guard.as_mut().ok_or(DnsError::NoServers)?;
    let servers: heapless::Vec<embassy_net::Ipv4Address, 3> =
        stack.config_v4().map(|config| config.dns_servers).unwrap_or_default();
    if servers.is_empty() {
        return Err(DnsError::NoServers);
    }
    let mut rx_meta = [PacketMetadata::EMPTY; 2];
    let mut tx_meta = [PacketMetadata::EMPTY; 2];
    let mut rx_buffer = [0u8; REPLY_CAPACITY];
    let mut tx_buffer = [0u8; MAX_QUERY_LEN];
    let mut socket = UdpSocket::new(stack, &mut rx_meta, &mut rx_buffer, &mut tx_meta, &mut tx_buffer);
    // A random source port from the dynamic range (RFC 6056), a random ID.
    let entropy = random.next_u64();
    let port = 49_152 + (entropy as u16 % 16_384);
    socket.bind(port).map_err(|_| DnsError::NoServers)?;
    let id = (entropy >> 16) as u16;
    let mut query = [0u8; MAX_QUERY_LEN];
    let length = build_query(id, name, record_type, &mut query)?;
    let mut reply = [0u8; REPLY_CAPACITY];
    for timeout in ATTEMPT_TIMEOUTS {
        for server in &servers {
            let endpoint = IpEndpoint::new(IpAddress::Ipv4(*server), 53);
            QUERIES_SENT.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            if socket.send_to(&query[..length], endpoint).await.is_err() {
                continue;
            }
            let deadline = Instant::now() + timeout;
            loop {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let Ok(received) = with_timeout(remaining, socket.recv_from(&mut reply)).await else {
                    break;
                };
                let Ok((count, from)) = received else {
                    break;
                };
                if from.endpoint != endpoint {
                    continue;
                }
                match parse_response(id, name, record_type, &reply[..count]) {
                    Ok(answer) => return Ok(answer),
                    // Not an answer to this question: ignore it, keep waiting.
                    Err(DnsError::IdMismatch | DnsError::QuestionMismatch | DnsError::NotAResponse) => continue,
                    // A server failure: ask the next server.
                    Err(DnsError::ServerFailure | DnsError::Refused) => break,
                    Err(error) => return Err(error),
                }
            }
        }
    }
    Err(DnsError::Timeout)
}

/// The first IPv4 address of `name`.
pub async fn resolve_address(stack: Stack<'static>, name: &str) -> Result<[u8; 4], DnsError> {
    match lookup(stack, name, RecordType::A).await? {
        Answer::A { records, .. } => records.first().map(|record| record.address).ok_or(DnsError::InvalidRecord),
        _ => Err(DnsError::InvalidRecord),
    }
}
