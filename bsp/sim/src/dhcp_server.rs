//! A DHCPv4 server for one client, so the device configures its network with DHCP in the
//! simulation exactly as on a real LAN (the services run their DHCP path unchanged).
//!
//! [`DhcpServer::answer`] is the sans-I/O core: a BOOTREQUEST in, the reply out. It offers
//! the [`Lease`]'s one address to the lease's MAC address (DISCOVER → OFFER), acknowledges
//! a REQUEST for that address (→ ACK, also for renewals) and refuses a request for any
//! other (→ NAK); other messages and other clients get no answer. [`serve`] runs it on a UDP
//! socket (port 67) of a simulated peer's embassy-net stack, which needs a static address in
//! the lease's subnet; replies go to the broadcast address (port 68), as for a client that
//! has no address yet. Requests are untrusted input: every length is checked before use.
//!
//! Owns nothing. Calls: embassy-net's UDP socket.

use core::net::Ipv4Addr;

use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::Stack;

/// The server's port.
pub const SERVER_PORT: u16 = 67;
/// The client's port.
pub const CLIENT_PORT: u16 = 68;
/// The fixed BOOTP header before the options (with the magic cookie).
const HEADER_BYTES: usize = 240;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// The largest reply (the minimum every DHCP client must accept).
pub const MAXIMUM_REPLY_BYTES: usize = 576;

const OPTION_PAD: u8 = 0;
const OPTION_SUBNET_MASK: u8 = 1;
const OPTION_ROUTER: u8 = 3;
const OPTION_DNS_SERVERS: u8 = 6;
const OPTION_REQUESTED_ADDRESS: u8 = 50;
const OPTION_LEASE_TIME: u8 = 51;
const OPTION_MESSAGE_TYPE: u8 = 53;
const OPTION_SERVER_IDENTIFIER: u8 = 54;
const OPTION_END: u8 = 255;

/// DHCP message types (option 53).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    /// A client looks for servers.
    Discover = 1,
    /// A server offers an address.
    Offer = 2,
    /// A client asks for an address.
    Request = 3,
    /// A server confirms.
    Ack = 5,
    /// A server refuses.
    Nak = 6,
}

/// What the server hands its one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The client's MAC address.
    pub client_mac: [u8; 6],
    /// The client's address.
    pub address: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix_length: u8,
    /// The default gateway, if any.
    pub router: Option<Ipv4Addr>,
    /// DNS servers (three at most are sent).
    pub dns_servers: Vec<Ipv4Addr>,
    /// How long the lease lasts.
    pub lease_seconds: u32,
}

/// The DHCP server of one lease.
#[derive(Clone, Debug)]
pub struct DhcpServer {
    server_address: Ipv4Addr,
    lease: Lease,
}

/// A checked view of a BOOTREQUEST.
struct Request<'a> {
    bytes: &'a [u8],
}

impl<'a> Request<'a> {
    fn new_checked(bytes: &'a [u8]) -> Option<Self> {
        let is_request = bytes.len() >= HEADER_BYTES && bytes[0] == 1 && bytes[1] == 1 && bytes[2] == 6;
        (is_request && bytes[236..240] == MAGIC_COOKIE).then_some(Self { bytes })
    }

    fn client_mac(&self) -> &'a [u8] {
        &self.bytes[28..34]
    }

    fn client_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.bytes[12], self.bytes[13], self.bytes[14], self.bytes[15])
    }

    /// The value of option `code`, if present and well-formed.
    fn option(&self, code: u8) -> Option<&'a [u8]> {
        let mut rest = &self.bytes[HEADER_BYTES..];
        while let Some((&option, after)) = rest.split_first() {
            match option {
                OPTION_PAD => rest = after,
                OPTION_END => return None,
                _ => {
                    let (&length, after) = after.split_first()?;
                    let value = after.get(..length as usize)?;
                    if option == code {
                        return Some(value);
                    }
                    rest = &after[length as usize..];
                }
            }
        }
        None
    }

    fn address_option(&self, code: u8) -> Option<Ipv4Addr> {
        let value: [u8; 4] = self.option(code)?.try_into().ok()?;
        Some(Ipv4Addr::from(value))
    }
}

/// Appends options to a reply.
struct OptionWriter<'a> {
    bytes: &'a mut [u8],
    length: usize,
}

impl OptionWriter<'_> {
    fn put(&mut self, code: u8, value: &[u8]) {
        self.bytes[self.length] = code;
        self.bytes[self.length + 1] = value.len() as u8;
        self.bytes[self.length + 2..self.length + 2 + value.len()].copy_from_slice(value);
        self.length += 2 + value.len();
    }
}

impl DhcpServer {
    /// A server at `server_address` (its stack's address) handing out `lease`.
    pub fn new(server_address: Ipv4Addr, lease: Lease) -> Self {
        assert!(lease.prefix_length <= 32, "an IPv4 prefix has at most 32 bits");
        Self { server_address, lease }
    }

    /// The reply to `request` written into `reply`: its type and length, or `None` when the
    /// request gets no answer.
    pub fn answer(&self, request: &[u8], reply: &mut [u8; MAXIMUM_REPLY_BYTES]) -> Option<(MessageType, usize)> {
        let request = Request::new_checked(request)?;
        if request.client_mac() != self.lease.client_mac {
            return None;
        }
        let answer = match request.option(OPTION_MESSAGE_TYPE)? {
            [1] => MessageType::Offer,
            [3] => {
                if request.address_option(OPTION_SERVER_IDENTIFIER).is_some_and(|server| server != self.server_address) {
                    return None; // the client chose another server
                }
                let wanted = request.address_option(OPTION_REQUESTED_ADDRESS).unwrap_or(request.client_address());
                if wanted == self.lease.address {
                    MessageType::Ack
                } else {
                    MessageType::Nak
                }
            }
            _ => return None,
        };
        reply.fill(0);
        reply[0] = 2; // BOOTREPLY
        reply[1..4].copy_from_slice(&request.bytes[1..4]); // hardware type, length, hops
        reply[4..8].copy_from_slice(&request.bytes[4..8]); // transaction
        reply[10..12].copy_from_slice(&request.bytes[10..12]); // flags
        if answer != MessageType::Nak {
            reply[16..20].copy_from_slice(&self.lease.address.octets()); // your address
            reply[20..24].copy_from_slice(&self.server_address.octets()); // next server
        }
        reply[28..44].copy_from_slice(&request.bytes[28..44]); // client hardware address
        reply[236..240].copy_from_slice(&MAGIC_COOKIE);
        let mut options = OptionWriter { bytes: &mut reply[..], length: HEADER_BYTES };
        options.put(OPTION_MESSAGE_TYPE, &[answer as u8]);
        options.put(OPTION_SERVER_IDENTIFIER, &self.server_address.octets());
        if answer != MessageType::Nak {
            let mask = u32::MAX.checked_shl(32 - self.lease.prefix_length as u32).unwrap_or(0);
            options.put(OPTION_LEASE_TIME, &self.lease.lease_seconds.to_be_bytes());
            options.put(OPTION_SUBNET_MASK, &mask.to_be_bytes());
            if let Some(router) = self.lease.router {
                options.put(OPTION_ROUTER, &router.octets());
            }
            let servers: Vec<u8> = self.lease.dns_servers.iter().take(3).flat_map(|server| server.octets()).collect();
            if !servers.is_empty() {
                options.put(OPTION_DNS_SERVERS, &servers);
            }
        }
        let end = options.length;
        reply[end] = OPTION_END;
        Some((answer, end + 1))
    }
}

/// Answers DHCP requests on `stack` (a peer's stack with a static address) for ever.
pub async fn serve(stack: Stack<'_>, server: DhcpServer) -> ! {
    let mut receive_metadata = [PacketMetadata::EMPTY; 4];
    let mut transmit_metadata = [PacketMetadata::EMPTY; 4];
    let mut receive_buffer = [0u8; 2048];
    let mut transmit_buffer = [0u8; 2048];
    let mut socket = UdpSocket::new(stack, &mut receive_metadata, &mut receive_buffer, &mut transmit_metadata, &mut transmit_buffer);
    socket.bind(SERVER_PORT).expect("a fresh socket binds");
    let mut request = [0u8; 1500];
    let mut reply = [0u8; MAXIMUM_REPLY_BYTES];
    loop {
        let Ok((length, _from)) = socket.recv_from(&mut request).await else {
            continue; // truncated: larger than any request this server answers
        };
        if let Some((_, reply_length)) = server.answer(&request[..length], &mut reply) {
            // A full transmit buffer only loses this reply; the client asks again.
            let _ = socket.send_to(&reply[..reply_length], (Ipv4Addr::BROADCAST, CLIENT_PORT)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn server() -> DhcpServer {
        DhcpServer::new(
            Ipv4Addr::new(10, 0, 0, 1),
            Lease {
                client_mac: CLIENT,
                address: Ipv4Addr::new(10, 0, 0, 2),
                prefix_length: 24,
                router: Some(Ipv4Addr::new(10, 0, 0, 1)),
                dns_servers: vec![Ipv4Addr::new(10, 0, 0, 53)],
                lease_seconds: 3600,
            },
        )
    }

    fn request(mac: [u8; 6], options: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; HEADER_BYTES];
        bytes[..3].copy_from_slice(&[1, 1, 6]);
        bytes[4..8].copy_from_slice(&[9, 8, 7, 6]);
        bytes[28..34].copy_from_slice(&mac);
        bytes[236..240].copy_from_slice(&MAGIC_COOKIE);
        bytes.extend_from_slice(options);
        bytes.push(OPTION_END);
        bytes
    }

    fn option(reply: &[u8], code: u8) -> Option<Vec<u8>> {
        Request { bytes: reply }.option(code).map(<[u8]>::to_vec)
    }

    #[test]
    fn a_discover_is_offered_the_lease_and_a_request_for_it_acknowledged() {
        let mut reply = [0u8; MAXIMUM_REPLY_BYTES];
        let (kind, length) = server().answer(&request(CLIENT, &[53, 1, 1]), &mut reply).unwrap();
        assert_eq!(kind, MessageType::Offer);
        assert_eq!(&reply[16..20], &[10, 0, 0, 2]);
        assert_eq!(&reply[4..8], &[9, 8, 7, 6], "the transaction is echoed");
        assert_eq!(option(&reply[..length], OPTION_SUBNET_MASK).unwrap(), [255, 255, 255, 0]);
        assert_eq!(option(&reply[..length], OPTION_SERVER_IDENTIFIER).unwrap(), [10, 0, 0, 1]);
        let asked = request(CLIENT, &[53, 1, 3, 50, 4, 10, 0, 0, 2, 54, 4, 10, 0, 0, 1]);
        let (kind, length) = server().answer(&asked, &mut reply).unwrap();
        assert_eq!(kind, MessageType::Ack);
        assert_eq!(option(&reply[..length], OPTION_ROUTER).unwrap(), [10, 0, 0, 1]);
        assert_eq!(option(&reply[..length], OPTION_DNS_SERVERS).unwrap(), [10, 0, 0, 53]);
        assert_eq!(option(&reply[..length], OPTION_LEASE_TIME).unwrap(), 3600u32.to_be_bytes());
    }

    #[test]
    fn other_addresses_are_refused_and_other_clients_and_servers_ignored() {
        let mut reply = [0u8; MAXIMUM_REPLY_BYTES];
        let (kind, _) = server().answer(&request(CLIENT, &[53, 1, 3, 50, 4, 10, 0, 0, 9]), &mut reply).unwrap();
        assert_eq!(kind, MessageType::Nak);
        assert!(server().answer(&request([2, 0, 0, 0, 0, 9], &[53, 1, 1]), &mut reply).is_none());
        assert!(server().answer(&request(CLIENT, &[53, 1, 3, 54, 4, 10, 0, 0, 7]), &mut reply).is_none());
        assert!(server().answer(&request(CLIENT, &[53, 1, 7]), &mut reply).is_none(), "a release needs no answer");
    }

    #[test]
    fn malformed_requests_get_no_answer() {
        let mut reply = [0u8; MAXIMUM_REPLY_BYTES];
        let discover = request(CLIENT, &[53, 1, 1]);
        for length in 0..discover.len() - 1 {
            assert!(server().answer(&discover[..length], &mut reply).is_none(), "truncated at {length}");
        }
        assert!(server().answer(&request(CLIENT, &[53, 200, 1]), &mut reply).is_none(), "option longer than the packet");
        let mut not_a_request = discover.clone();
        not_a_request[0] = 2;
        assert!(server().answer(&not_a_request, &mut reply).is_none());
    }
}
