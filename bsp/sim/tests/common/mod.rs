//! Shared helpers for the board's integration tests: peer stacks on a segment, and running a
//! simulation on a thread of its own (each thread has its own clock).
#![allow(dead_code)]

use embassy_net::{Config, Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use homemx_bsp_sim::ethernet::SimEthernet;
use homemx_bsp_sim::executor::SimExecutor;

/// An embassy-net stack on `driver`, its runner spawned on `executor`.
pub fn stack(driver: SimEthernet, config: Config, seed: u64, executor: SimExecutor) -> Stack<'static> {
    let resources: &'static mut StackResources<4> = Box::leak(Box::new(StackResources::new()));
    let (stack, mut runner) = embassy_net::new(driver, config, resources, seed);
    executor.spawn(async move { runner.run().await });
    stack
}

/// A static configuration `a.b.c.d/24` without gateway or DNS.
pub fn static_config(address: [u8; 4]) -> Config {
    let [a, b, c, d] = address;
    Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(a, b, c, d), 24),
        gateway: None,
        dns_servers: Default::default(),
    })
}

/// Runs `simulation` on a fresh thread (a fresh simulated clock at 0) and returns its result.
pub fn on_own_thread<T: Send + 'static>(simulation: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(simulation).join().expect("the simulation panicked")
}

/// Deterministic bytes.
pub fn pattern(length: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}
