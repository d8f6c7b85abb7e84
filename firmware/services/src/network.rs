//! The IPv4 network: embassy-net over the board's Ethernet driver, configured by DHCP, and
//! the task that runs the stack.
//!
//! smoltcp keeps no listen backlog: a connection request (SYN) that finds no socket listening
//! on its port is answered with a reset, so a burst of connections to the mail ports would be
//! refused at the TCP level although every client would get an SMTP answer a moment later.
//! [`ListenBacklog`] drops those resets for the mail ports, as a full backlog does on other
//! systems: the client sends its SYN again (after a second, then with backoff) and meets the
//! next free listener, which answers `220` or `421` (on 465, the TLS handshake).
//!
//! Owns: the network stack's resources and the task that runs it. Calls: `cpu_load`, `instrument`,
//! `wall_clock`.

use embassy_executor::Spawner;
use embassy_net::{Config, Runner, Stack, StackResources};
use static_cell::StaticCell;

use crate::bsp;

/// Sockets the stack can hold: every listener of the board's sizing and the fixed ones
/// (`homemx_board::FIXED_SOCKETS`).
pub const SOCKET_COUNT: usize = crate::bsp::SIZING.sockets();
const _: () = assert!(crate::bsp::SIZING.is_consistent(), "the board's sizing does not fit together");

type NetworkDriver = <bsp::Parts as PartsTypes>::Network;

/// Names the driver type of a board's parts (the parts struct is generic).
pub trait PartsTypes {
    /// The board's Ethernet driver.
    type Network: homemx_board::NetworkDriver + 'static;
    /// The board's console link.
    type Serial: homemx_board::SerialLink + 'static;
    /// The board's data flash (key-value store and spool).
    type Flash: homemx_board::BoardFlash + 'static;
    /// The board's key flash (key store).
    type KeyFlash: homemx_board::BoardFlash + 'static;
    /// The board's tamper loop.
    type Tamper: homemx_board::TamperLoop + 'static;
    /// The board's chip key (the key store binds its records to it).
    type ChipKey: homemx_board::ChipKey + 'static;
}

impl<N, F, S, E, R, K, T, C> PartsTypes for homemx_board::BoardParts<N, F, S, E, R, K, T, C>
where
    N: homemx_board::NetworkDriver + 'static,
    S: homemx_board::SerialLink + 'static,
    F: homemx_board::BoardFlash + 'static,
    K: homemx_board::BoardFlash + 'static,
    T: homemx_board::TamperLoop + 'static,
    C: homemx_board::ChipKey + 'static,
{
    type Network = N;
    type Serial = S;
    type Flash = F;
    type KeyFlash = K;
    type Tamper = T;
    type ChipKey = C;
}

#[embassy_executor::task]
async fn network_task(mut runner: Runner<'static, ListenBacklog<NetworkDriver>>) -> ! {
    runner.run().await
}

/// The ports whose refused connection requests wait for a listener instead of a reset: the
/// mail ports, 465 included (it has no spare listeners, so a burst beyond its listeners, a TLS
/// scanner's or a mail client's parallel connections, would otherwise be reset).
const BACKLOG_PORTS: [u16; 3] = [homemx_smtp::SMTP_PORT, homemx_smtp::SUBMISSION_PORT, homemx_smtp::SUBMISSIONS_PORT];

/// The board's driver, minus the resets smoltcp sends for connection requests to
/// [`BACKLOG_PORTS`] that found no listener (see the module documentation).
pub struct ListenBacklog<D>(D);

/// A transmit token of [`ListenBacklog`].
pub struct ListenBacklogToken<T>(T);

/// Longest frame that may be a reset (Ethernet 14 + IPv4 up to 60 + TCP 20, padded).
const RESET_FRAME_MAX: usize = 96;

/// Whether `frame` is smoltcp's reset for a SYN that found no listener on a backlog port:
/// IPv4, TCP from one of [`BACKLOG_PORTS`], RST and ACK, sequence number 0 (the reply to a
/// SYN carries no sequence of its own; RFC 9293 3.10.7.1).
fn is_refused_connection_request(frame: &[u8]) -> bool {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
        return false;
    }
    let header_length = usize::from(frame[14] & 0x0f) * 4;
    let tcp_start = 14 + header_length;
    if frame[14 + 9] != 6 || header_length < 20 || frame.len() < tcp_start + 20 {
        return false;
    }
    let tcp = &frame[tcp_start..];
    let source_port = u16::from_be_bytes([tcp[0], tcp[1]]);
    const RESET: u8 = 0x04;
    const ACKNOWLEDGE: u8 = 0x10;
    BACKLOG_PORTS.contains(&source_port) && tcp[13] & (RESET | ACKNOWLEDGE) == RESET | ACKNOWLEDGE && tcp[4..8] == [0; 4]
}

impl<D: embassy_net::driver::Driver> embassy_net::driver::Driver for ListenBacklog<D> {
    type RxToken<'a>
        = D::RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = ListenBacklogToken<D::TxToken<'a>>
    where
        Self: 'a;

    fn receive(&mut self, cx: &mut core::task::Context) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.0.receive(cx).map(|(receive, transmit)| (receive, ListenBacklogToken(transmit)))
    }

    fn transmit(&mut self, cx: &mut core::task::Context) -> Option<Self::TxToken<'_>> {
        self.0.transmit(cx).map(ListenBacklogToken)
    }

    fn link_state(&mut self, cx: &mut core::task::Context) -> embassy_net::driver::LinkState {
        self.0.link_state(cx)
    }

    fn capabilities(&self) -> embassy_net::driver::Capabilities {
        self.0.capabilities()
    }

    fn hardware_address(&self) -> embassy_net::driver::HardwareAddress {
        self.0.hardware_address()
    }
}

impl<T: embassy_net::driver::TxToken> embassy_net::driver::TxToken for ListenBacklogToken<T> {
    fn consume<R, F>(self, length: usize, build: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        if length > RESET_FRAME_MAX {
            return self.0.consume(length, build);
        }
        // Small frames are built aside first, so that a reset can be dropped unsent.
        let mut frame = [0u8; RESET_FRAME_MAX];
        let result = build(&mut frame[..length]);
        if !is_refused_connection_request(&frame[..length]) {
            self.0.consume(length, |buffer| buffer.copy_from_slice(&frame[..length]));
        }
        result
    }
}

/// Starts the stack with DHCP and returns its handle. Never inlined: the socket slots are put
/// together on the stack before they are moved into their static (9.5 KB); inlined into the
/// start task's poll, that temporary stayed in its frame (11.5 KB) under every later step of
/// the start, the key store's mount among them.
#[inline(never)]
pub fn start(spawner: Spawner, driver: NetworkDriver, random_seed: u64) -> Stack<'static> {
    // 8,552 B (llvm-nm, both boards): one smoltcp socket slot for each of the SOCKET_COUNT (23)
    // sockets, about 370 B each (the largest socket type's state, TCP's; the buffers are the
    // tasks' own), the count `Sizing::sockets()` requires: it cannot shrink without a listener.
    static RESOURCES: StaticCell<StackResources<SOCKET_COUNT>> = StaticCell::new();
    let config = Config::dhcpv4(Default::default());
    let (stack, runner) =
        embassy_net::new(ListenBacklog(driver), config, RESOURCES.init(StackResources::new()), random_seed);
    spawner.spawn(network_task(runner).unwrap());
    stack
}

/// Waits for link and address, then logs the readiness line the harness and user look for.
pub async fn log_when_ready(stack: Stack<'static>) {
    stack.wait_link_up().await;
    defmt::info!("link up");
    stack.wait_config_up().await;
    crate::instrument::reached(crate::instrument::Operation::BootToReady);
    if let Some(config) = stack.config_v4() {
        defmt::info!(
            "homemx ready: address {}, gateway {}; busy core-clock counts since start: {=u64}",
            config.address,
            config.gateway,
            crate::cpu_load::busy_core_clock_counts()
        );
    }
}

/// Ends a TCP connection cleanly before its buffers are reused: send what is queued and our
/// FIN, then release the socket (a RST only if the peer still holds it open).
pub async fn release(socket: &mut embassy_net::tcp::TcpSocket<'_>) {
    socket.close();
    let _ = socket.flush().await;
    socket.abort();
    let _ = socket.flush().await;
}

/// Like [`release`], but after our FIN gives the peer up to `grace` to close its side first:
/// a reset would make its TCP stack discard an answer it has not read yet (a refusal's
/// `421`, for one).
pub async fn release_after_answer(socket: &mut embassy_net::tcp::TcpSocket<'_>, grace: embassy_time::Duration) {
    socket.close();
    let _ = socket.flush().await;
    let mut discard = [0u8; 16];
    let _ = embassy_time::with_timeout(grace, async {
        // Ends at the peer's FIN (Ok(0)) or a broken connection (Err), never spins.
        while let Ok(1..) = socket.read(&mut discard).await {}
    })
    .await;
    socket.abort();
    let _ = socket.flush().await;
}

/// The mail sessions' clock: the SNTP wall clock once known; before that, `Received:` dates
/// count from the Unix epoch plus uptime. Retry times use [`uptime_seconds`], never this.
pub fn mail_clock() -> homemx_smtp::Now {
    let milliseconds = embassy_time::Instant::now().as_millis();
    let unix_seconds = crate::wall_clock::unix_seconds().unwrap_or(milliseconds / 1000);
    homemx_smtp::Now { unix_seconds, monotonic_milliseconds: milliseconds }
}

/// Seconds since boot (the clock of retry times within one boot).
pub fn uptime_seconds() -> u64 {
    embassy_time::Instant::now().as_secs()
}
