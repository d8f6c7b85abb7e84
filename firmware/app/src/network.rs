//! The IPv4 network: embassy-net over the board's Ethernet driver, configured by DHCP, and
//! the task that runs the stack.

use embassy_executor::Spawner;
use embassy_net::{Config, Runner, Stack, StackResources};
use static_cell::StaticCell;

use crate::bsp;

/// Sockets the stack can hold: DHCP, HTTP ×3, UDP echo, MX ×4, submission ×2, delivery,
/// DNS, SNTP, and one spare.
const SOCKET_COUNT: usize = 16;

type NetworkDriver = <bsp::Parts as PartsTypes>::Network;

/// Names the driver type of a board's parts (the parts struct is generic).
pub trait PartsTypes {
    /// The board's Ethernet driver.
    type Network: homemx_board::NetworkDriver + 'static;
    /// The board's console link.
    type Serial: homemx_board::SerialLink + 'static;
    /// The board's flash partition for the application.
    type Flash: homemx_board::BoardFlash + 'static;
}

impl<N, F, S, E, R> PartsTypes for homemx_board::BoardParts<N, F, S, E, R>
where
    N: homemx_board::NetworkDriver + 'static,
    S: homemx_board::SerialLink + 'static,
    F: homemx_board::BoardFlash + 'static,
{
    type Network = N;
    type Serial = S;
    type Flash = F;
}

#[embassy_executor::task]
async fn network_task(mut runner: Runner<'static, NetworkDriver>) -> ! {
    runner.run().await
}

/// Starts the stack with DHCP and returns its handle.
pub fn start(spawner: Spawner, driver: NetworkDriver, random_seed: u64) -> Stack<'static> {
    static RESOURCES: StaticCell<StackResources<SOCKET_COUNT>> = StaticCell::new();
    let config = Config::dhcpv4(Default::default());
    let (stack, runner) = embassy_net::new(driver, config, RESOURCES.init(StackResources::new()), random_seed);
    spawner.spawn(network_task(runner).unwrap());
    stack
}

/// Waits for link and address, then logs the readiness line the harness and user look for.
pub async fn log_when_ready(stack: Stack<'static>) {
    stack.wait_link_up().await;
    defmt::info!("link up");
    stack.wait_config_up().await;
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
