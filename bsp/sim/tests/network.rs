//! The simulated Ethernet: two embassy-net stacks exchange a TCP stream byte-exact under
//! drops, duplicates, reorders and corruption; one seed gives the same faults and the same
//! deliveries twice; without faults none are counted; the device gets its address by DHCP.

mod common;

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::rc::Rc;

use common::{on_own_thread, pattern, stack, static_config};
use embassy_net::tcp::TcpSocket;
use embassy_net::{Config, DhcpConfig, Ipv4Address};
use embassy_time::{Duration, Timer};
use embedded_io_async::Write;
use homemx_bsp_sim::dhcp_server::{self, DhcpServer, Lease};
use homemx_bsp_sim::ethernet::{FaultCounts, FaultPlan, Segment, SegmentStatistics};
use homemx_bsp_sim::executor::{run, Limits, RunOutcome, SimExecutor};
use homemx_bsp_sim::seeds::{self, Domain};
use homemx_bsp_sim::{time_driver, SimConfig, World};
use homemx_board::ResetCause;

const STREAM_BYTES: usize = 100_000;
const PORT: u16 = 1234;
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

/// Frequent enough that a 100 KB stream meets every kind many times.
const LOSSY: FaultPlan =
    FaultPlan { drop_per_million: 50_000, duplicate_per_million: 30_000, reorder_per_million: 50_000, corrupt_per_million: 10_000 };

#[derive(Debug, PartialEq, Eq)]
struct Transfer {
    faults: FaultCounts,
    statistics: SegmentStatistics,
    digest: [u8; 32],
    finished_at: u64,
}

/// Streams 100 KB from 10.0.0.1 to 10.0.0.2 and checks every byte; returns what the wire did.
fn transfer(seed: u64, plan: FaultPlan) -> Transfer {
    on_own_thread(move || {
        let executor = SimExecutor::new();
        let segment = Segment::new(seed, 0, plan);
        let sender = stack(segment.attach(MAC_A), static_config([10, 0, 0, 1]), seeds::draw_u64(seed, Domain::Peer, 0), executor);
        let receiver = stack(segment.attach(MAC_B), static_config([10, 0, 0, 2]), seeds::draw_u64(seed, Domain::Peer, 1), executor);
        let payload = pattern(STREAM_BYTES, 7);
        let received: Rc<RefCell<Option<Vec<u8>>>> = Rc::default();

        let into = received.clone();
        executor.spawn(async move {
            let (mut receive_buffer, mut transmit_buffer) = ([0u8; 4096], [0u8; 4096]);
            let mut socket = TcpSocket::new(receiver, &mut receive_buffer, &mut transmit_buffer);
            socket.accept(PORT).await.expect("accept");
            let mut bytes = Vec::new();
            let mut chunk = [0u8; 1024];
            loop {
                match socket.read(&mut chunk).await.expect("read") {
                    0 => break,
                    count => bytes.extend_from_slice(&chunk[..count]),
                }
            }
            socket.close();
            *into.borrow_mut() = Some(bytes);
        });
        let sent = payload.clone();
        executor.spawn(async move {
            let (mut receive_buffer, mut transmit_buffer) = ([0u8; 4096], [0u8; 4096]);
            let mut socket = TcpSocket::new(sender, &mut receive_buffer, &mut transmit_buffer);
            socket.connect((Ipv4Address::new(10, 0, 0, 2), PORT)).await.expect("connect");
            socket.write_all(&sent).await.expect("write");
            socket.flush().await.expect("flush");
            socket.close();
            // Keep the socket until the peer closes too (dropping it would discard the FIN).
            let mut rest = [0u8; 16];
            while socket.read(&mut rest).await.is_ok_and(|count| count > 0) {}
            Timer::after(Duration::from_secs(3600)).await;
        });

        let outcome = run(&[executor], Limits { max_steps: 2_000_000, deadline: Some(3_600_000) }, |_| {
            if received.borrow().is_some() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(outcome, RunOutcome::Stopped(()), "the stream did not finish (faults {:?})", segment.faults());
        let bytes = received.borrow_mut().take().unwrap();
        assert_eq!(bytes.len(), payload.len());
        assert!(bytes == payload, "the stream arrived altered");
        Transfer { faults: segment.faults(), statistics: segment.statistics(), digest: segment.digest(), finished_at: time_driver::now() }
    })
}

#[test]
fn a_tcp_stream_arrives_byte_exact_through_drops_duplicates_reorders_and_corruption() {
    let run = transfer(42, LOSSY);
    println!("faults injected: {} {:?}, {:?}, finished at {} ms", run.faults.total(), run.faults, run.statistics, run.finished_at);
    assert!(run.faults.dropped > 0 && run.faults.duplicated > 0 && run.faults.reordered > 0 && run.faults.corrupted > 0, "{:?}", run.faults);
    assert!(run.statistics.frames_delivered > (STREAM_BYTES / 1460) as u64);
}

#[test]
fn one_seed_gives_the_same_faults_and_deliveries_and_another_seed_does_not() {
    let first = transfer(7, LOSSY);
    let second = transfer(7, LOSSY);
    assert_eq!(first, second);
    assert!(first.faults.total() > 0);
    let other = transfer(8, LOSSY);
    assert_ne!(first.digest, other.digest);
}

#[test]
fn without_faults_none_are_counted() {
    let run = transfer(42, FaultPlan::NONE);
    assert_eq!(run.faults, FaultCounts::default());
    assert_eq!(run.faults.total(), 0);
    assert_eq!(run.statistics.overflowed, 0);
}

#[test]
fn the_device_gets_its_address_from_the_simulated_dhcp_server() {
    on_own_thread(|| {
        let config = SimConfig { faults: FaultPlan { drop_per_million: 100_000, ..FaultPlan::NONE }, ..SimConfig::new(3) };
        let mut world = World::new(config);
        let peers = SimExecutor::new();
        let router = stack(world.segment().attach(MAC_B), static_config([10, 0, 0, 1]), 1, peers);
        let lease = Lease {
            client_mac: config.mac_address,
            address: Ipv4Address::new(10, 0, 0, 2),
            prefix_length: 24,
            router: Some(Ipv4Address::new(10, 0, 0, 1)),
            dns_servers: vec![Ipv4Address::new(10, 0, 0, 53)],
            lease_seconds: 600,
        };
        peers.spawn(dhcp_server::serve(router, DhcpServer::new(Ipv4Address::new(10, 0, 0, 1), lease)));

        let (parts, _handles) = world.boot(ResetCause::PowerOn);
        let device = SimExecutor::new();
        let device_stack = stack(parts.network, Config::dhcpv4(DhcpConfig::default()), 99, device);

        let limits = Limits { max_steps: 100_000, deadline: Some(600_000) };
        let outcome = run(&[device, peers], limits, |_| match device_stack.config_v4() {
            Some(config) => ControlFlow::Break(config),
            None => ControlFlow::Continue(()),
        });
        let RunOutcome::Stopped(config) = outcome else { panic!("no lease: {outcome:?}") };
        assert_eq!(config.address.address(), Ipv4Address::new(10, 0, 0, 2));
        assert_eq!(config.address.prefix_len(), 24);
        assert_eq!(config.gateway, Some(Ipv4Address::new(10, 0, 0, 1)));
        assert_eq!(config.dns_servers.as_slice(), &[Ipv4Address::new(10, 0, 0, 53)]);

        // The lease is renewed (at half its time) and the address kept.
        let renewed = run(&[device, peers], Limits { max_steps: 100_000, deadline: Some(time_driver::now() + 900_000) }, |_| {
            ControlFlow::<()>::Continue(())
        });
        assert_eq!(renewed, RunOutcome::Quiescent);
        assert_eq!(device_stack.config_v4().map(|config| config.address.address()), Some(Ipv4Address::new(10, 0, 0, 2)));
    })
}

#[test]
fn streams_arrive_byte_exact_under_many_seeds() {
    let mut total = FaultCounts::default();
    for seed in 100..132 {
        let faults = transfer(seed, LOSSY).faults;
        total.dropped += faults.dropped;
        total.duplicated += faults.duplicated;
        total.reordered += faults.reordered;
        total.corrupted += faults.corrupted;
    }
    println!("32 streams, faults injected: {} {total:?}", total.total());
    assert!(total.dropped > 0 && total.duplicated > 0 && total.reordered > 0 && total.corrupted > 0);
}

enum Link {
    Up,
    DownSince(u64),
    UpAgain,
}

#[test]
fn a_link_reset_in_the_middle_of_a_stream_is_survived() {
    on_own_thread(|| {
        let executor = SimExecutor::new();
        let segment = Segment::new(1, 0, FaultPlan::NONE);
        let receiver_port = segment.attach(MAC_B);
        let port = receiver_port.port();
        let sender = stack(segment.attach(MAC_A), static_config([10, 0, 0, 1]), 1, executor);
        let receiver = stack(receiver_port, static_config([10, 0, 0, 2]), 2, executor);
        let payload = pattern(STREAM_BYTES, 9);
        let received: Rc<RefCell<Vec<u8>>> = Rc::default();
        let finished: Rc<RefCell<bool>> = Rc::default();

        let (into, done) = (received.clone(), finished.clone());
        executor.spawn(async move {
            let (mut receive_buffer, mut transmit_buffer) = ([0u8; 4096], [0u8; 4096]);
            let mut socket = TcpSocket::new(receiver, &mut receive_buffer, &mut transmit_buffer);
            socket.accept(PORT).await.expect("accept");
            let mut chunk = [0u8; 1024];
            while let Ok(count @ 1..) = socket.read(&mut chunk).await {
                into.borrow_mut().extend_from_slice(&chunk[..count]);
            }
            *done.borrow_mut() = true;
            socket.close();
        });
        let sent = payload.clone();
        executor.spawn(async move {
            let (mut receive_buffer, mut transmit_buffer) = ([0u8; 4096], [0u8; 4096]);
            let mut socket = TcpSocket::new(sender, &mut receive_buffer, &mut transmit_buffer);
            socket.connect((Ipv4Address::new(10, 0, 0, 2), PORT)).await.expect("connect");
            socket.write_all(&sent).await.expect("write");
            socket.flush().await.expect("flush");
            socket.close();
            let mut rest = [0u8; 16];
            while socket.read(&mut rest).await.is_ok_and(|count| count > 0) {}
            Timer::after(Duration::from_secs(3600)).await;
        });

        // Once half the stream is through, the receiver's link goes down for two seconds.
        let mut link = Link::Up;
        let outcome = run(&[executor], Limits { max_steps: 1_000_000, deadline: Some(3_600_000) }, |_| {
            let now = time_driver::now();
            match link {
                Link::Up if received.borrow().len() > STREAM_BYTES / 2 => {
                    segment.reset_link(port);
                    link = Link::DownSince(now);
                }
                Link::DownSince(since) if now >= since + 2_000 => {
                    segment.set_link(port, true);
                    link = Link::UpAgain;
                }
                _ => {}
            }
            if *finished.borrow() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(outcome, RunOutcome::Stopped(()));
        assert!(matches!(link, Link::UpAgain));
        assert!(*received.borrow() == payload, "the stream arrived altered");
        assert_eq!(segment.faults().link_resets, 1);
        assert!(segment.statistics().lost_offline > 0, "frames were lost while the link was down");
    })
}
