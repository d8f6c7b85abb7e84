//! The MX's sessions under abuse, end to end: clients that hang up mid-session (FIN and
//! reset) never stall the device, a burst of connections from one address gets SMTP answers
//! (never a TCP reset), and a WAN client holding every port-25 slot does not lock the LAN out
//! of submission, nor (holding every transaction slot) get more than `452 4.3.1` for a LAN
//! sender, who is served once a slot is free. The firmware's longest task poll is reported
//! (target 50 ms, fails at 500 ms).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::flash_image;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT, WAN_CLIENT};
use homemx_qemu::owner::{write_configuration, Owner};
use homemx_qemu::peers::{assert_short_polls, connect_from, health, send_mail};

/// A second WAN client (added to the namespace by the test).
const SECOND_WAN_CLIENT: std::net::Ipv4Addr = std::net::Ipv4Addr::new(203, 0, 113, 11);
/// Connections in the burst.
const BURST: usize = 64;
/// The QEMU board's transaction slots (`firmware/app/src/mx.rs`, `TRANSACTION_SLOTS`).
const TRANSACTION_SLOTS: usize = 4;

const MESSAGE: &[u8] = b"From: Someone <someone@remote.test>\r\nTo: Alice <alice@example.org>\r\nSubject: after the hang-ups\r\n\r\nhello\r\n";

fn code(reply: &serde_json::Value) -> u64 {
    reply[0].as_u64().unwrap_or(0)
}

/// Connects from `source` inside the namespace and reads the first reply line.
fn connect_and_read_line(network: &IsolatedNetwork, source: std::net::Ipv4Addr, port: u16) -> (TcpStream, Result<String, String>) {
    network
        .run_inside(move || {
            let stream = connect_from(source, SocketAddrV4::new(APPLIANCE, port), Duration::from_secs(10)).expect("TCP connect");
            let mut line = String::new();
            let read = BufReader::new(&stream).read_line(&mut line).map_err(|error| format!("{error} ({:?})", error.kind()));
            (stream, read.map(|_| line))
        })
        .unwrap()
}

/// Reads one SMTP reply (all its lines) and returns its last line.
fn read_reply(reader: &mut BufReader<TcpStream>) -> String {
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a reply line");
        assert!(line.len() >= 4, "a reply line: {line:?}");
        if line.as_bytes()[3] == b' ' {
            return line;
        }
    }
}

/// Sends one command line and returns the last line of its reply.
fn command(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, line: &str) -> String {
    stream.write_all(format!("{line}\r\n").as_bytes()).expect("command sent");
    read_reply(reader)
}

/// `/health` answers within a second (the device is not frozen).
fn assert_health_prompt(network: &IsolatedNetwork, context: &str) {
    let (_, elapsed) = health(network).unwrap_or_else(|error| panic!("/health {context}: {error}"));
    assert!(elapsed < Duration::from_secs(1), "/health {context} took {elapsed:?}");
}

#[test]
fn hang_ups_bursts_and_slot_holders_never_stall_or_lock_out() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("mx-sessions").unwrap();
    write_configuration(&directory);
    std::fs::write(directory.join("message.eml"), MESSAGE).unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let config = MachineConfig::on_network(elf, flash, &network);
    let machine = Machine::start(&config, &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    let (booted, _) = health(&network).expect("/health answers");
    Owner::at(&directory).provision();
    let (provisioned, _) = health(&network).expect("/health answers");
    eprintln!(
        "longest task poll: {} µs after boot, {} µs after provisioning",
        booted["longest_poll_microseconds"], provisioned["longest_poll_microseconds"]
    );
    let send = |source, server: String| {
        send_mail(&namespace, source, server, "someone@remote.test", &["alice@example.org"], &directory.join("message.eml"), false)
            .expect("smtp client runs")
    };

    // Finding 4: 20 clients say EHLO and hang up (odd ones with a reset); the device keeps
    // answering, and the next sender is served.
    for round in 0..20 {
        let reset = round % 2 == 1;
        network
            .run_inside(move || {
                let mut stream = connect_from(WAN_CLIENT, SocketAddrV4::new(APPLIANCE, 25), Duration::from_secs(10)).expect("TCP connect");
                let mut banner = String::new();
                BufReader::new(&stream).read_line(&mut banner).expect("banner");
                assert!(banner.starts_with("220 "), "banner: {banner}");
                stream.write_all(b"EHLO x\r\n").expect("EHLO sent");
                if reset {
                    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
                }
            })
            .unwrap();
        assert_health_prompt(&network, &format!("after hang-up {round}"));
    }
    let reply = send(WAN_CLIENT, APPLIANCE.to_string());
    assert_eq!(code(&reply["data"]), 250, "a message right after the hang-ups: {reply}");

    // Finding 6: two WAN clients hold all four port-25 sessions; the next WAN client gets
    // `421` from the spare listener (not a reset), and the LAN still submits on 587.
    network.add_client_address(SECOND_WAN_CLIENT).unwrap();
    let mut holders = Vec::new();
    for source in [WAN_CLIENT, WAN_CLIENT, SECOND_WAN_CLIENT, SECOND_WAN_CLIENT] {
        let (stream, line) = connect_and_read_line(&network, source, 25);
        let line = line.expect("banner");
        assert!(line.starts_with("220 "), "a holder's banner: {line}");
        holders.push(stream);
    }
    for holder in &mut holders {
        holder.write_all(b"EHLO holder.test\r\nNOOP\r\n").unwrap();
    }
    let (_, line) = connect_and_read_line(&network, WAN_CLIENT, 25);
    let line = line.expect("an SMTP answer while every session is taken, not a reset");
    assert!(line.starts_with("421 4.7.0 "), "the spare listener answers: {line}");
    let reply = send(LAN_CLIENT, format!("{APPLIANCE}:587"));
    assert_eq!(code(&reply["data"]), 250, "LAN submission while WAN clients hold every MX session: {reply}");

    // Transaction slots: the holders open a transaction each (every slot); a LAN client's
    // MAIL FROM then gets `452 4.3.1`, and the slot a holder gives back (RSET) serves it.
    assert_eq!(holders.len(), TRANSACTION_SLOTS);
    let mut readers: Vec<_> = holders.iter().map(|holder| BufReader::new(holder.try_clone().unwrap())).collect();
    for (holder, reader) in holders.iter_mut().zip(&mut readers) {
        read_reply(reader);
        read_reply(reader);
        let reply = command(holder, reader, "MAIL FROM:<someone@remote.test>");
        assert!(reply.starts_with("250 "), "a holder opens a transaction: {reply}");
    }
    let (mut lan, banner) = connect_and_read_line(&network, LAN_CLIENT, 587);
    assert!(banner.expect("banner").starts_with("220 "));
    let mut lan_reader = BufReader::new(lan.try_clone().unwrap());
    assert!(command(&mut lan, &mut lan_reader, "EHLO lan.test").starts_with("250 "));
    let reply = command(&mut lan, &mut lan_reader, "MAIL FROM:<alice@example.org>");
    assert!(reply.starts_with("452 4.3.1 "), "MAIL FROM with every transaction slot taken: {reply}");
    let reply = command(&mut holders[0], &mut readers[0], "RSET");
    assert!(reply.starts_with("250 "), "RSET: {reply}");
    let reply = command(&mut lan, &mut lan_reader, "MAIL FROM:<alice@example.org>");
    assert!(reply.starts_with("250 "), "MAIL FROM once a slot is free again: {reply}");
    assert!(command(&mut lan, &mut lan_reader, "RCPT TO:<alice@example.org>").starts_with("250 "));
    assert!(command(&mut lan, &mut lan_reader, "DATA").starts_with("354 "));
    let reply = command(&mut lan, &mut lan_reader, "Subject: through a freed slot\r\n\r\nhello\r\n.");
    assert!(reply.starts_with("250 "), "the message through the freed slot: {reply}");
    // The readers are clones of the holders' sockets: both go, or the connections stay open.
    drop((holders, readers, lan, lan_reader));

    // A burst of 64 connections from one address: every one gets an SMTP answer (its first
    // two sessions 220, the rest 421), not a TCP reset.
    let lines = network
        .run_inside(|| {
            let connections: Vec<_> = (0..BURST)
                .map(|_| {
                    std::thread::spawn(|| -> Result<(Option<TcpStream>, String), String> {
                        let stream = connect_from(WAN_CLIENT, SocketAddrV4::new(APPLIANCE, 25), Duration::from_secs(120))
                            .map_err(|error| format!("connect: {error}"))?;
                        let mut line = String::new();
                        BufReader::new(&stream).read_line(&mut line).map_err(|error| format!("read: {error} ({:?})", error.kind()))?;
                        // A greeted client holds its session; a refused one hangs up, as MTAs do.
                        Ok((line.starts_with("220 ").then_some(stream), line))
                    })
                })
                .collect();
            let results: Vec<_> = connections.into_iter().map(|thread| thread.join().unwrap()).collect();
            results.into_iter().map(|result| result.map(|(_, line)| line)).collect::<Vec<_>>()
        })
        .unwrap();
    let greeted = lines.iter().filter(|line| line.as_ref().is_ok_and(|line| line.starts_with("220 "))).count();
    let refused = lines.iter().filter(|line| line.as_ref().is_ok_and(|line| line.starts_with("421 4.7.0 "))).count();
    let failures: Vec<_> = lines.iter().filter_map(|line| line.as_ref().err()).collect();
    eprintln!("burst of {BURST}: {greeted} × 220, {refused} × 421, {} failed: {failures:?}", failures.len());
    assert!(failures.is_empty(), "every connection of the burst gets an SMTP answer: {failures:?}");
    assert_eq!(greeted + refused, BURST, "{lines:?}");
    assert_health_prompt(&network, "after the burst");
    let reply = send(WAN_CLIENT, APPLIANCE.to_string());
    assert_eq!(code(&reply["data"]), 250, "a message right after the burst: {reply}");

    assert_short_polls(&network);
}
