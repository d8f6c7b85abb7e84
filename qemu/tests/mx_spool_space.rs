//! One oversized message must not shut the MX (issue 12, finding 5). From the WAN address, a
//! real SMTP client (smtplib, no `SIZE=`) sends a message over the 4 MiB size limit (refused
//! with 552 at the end of data, after the spool took what arrived), then a bounded burst of
//! connections comes and goes, then a 10 KB message without `SIZE=`: it must get `250` and
//! reach the LAN mailbox host. (Before the fix every message after the oversized one got
//! `451 4.3.0`: a message without `SIZE=` reserved the 4 MiB worst case, and the space the
//! refused message wrote was not usable again until something reclaimed it.)

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::flash_image;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT, WAN_CLIENT};
use homemx_qemu::owner::{write_configuration, Owner};
use homemx_qemu::peers::{send_mail, MailboxHost};

/// Connections opened at once in the burst (bounded).
const BURST: usize = 16;

fn code(reply: &serde_json::Value) -> u64 {
    reply[0].as_u64().unwrap_or(0)
}

/// A message of about `length` bytes: headers, then 76-character lines.
fn message(subject: &str, length: usize) -> Vec<u8> {
    let mut text = format!("From: someone@remote.test\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\r\n").into_bytes();
    let mut line = 0;
    while text.len() < length {
        text.extend_from_slice(format!("{line:08} the quick brown fox jumps over the lazy dog 0123456789abcdefghij\r\n").as_bytes());
        line += 1;
    }
    text
}

/// Opens `BURST` connections from the WAN address at once, reads each one's first answer
/// line (a banner or a refusal), then closes them all; returns the answers.
fn connection_burst(network: &IsolatedNetwork) -> Vec<String> {
    network
        .run_inside(|| {
            let target = SocketAddr::V4(SocketAddrV4::new(APPLIANCE, 25));
            let mut streams = Vec::new();
            for _ in 0..BURST {
                let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
                socket.bind(&SocketAddr::V4(SocketAddrV4::new(WAN_CLIENT, 0)).into()).unwrap();
                if socket.connect_timeout(&target.into(), Duration::from_secs(5)).is_ok() {
                    streams.push(TcpStream::from(socket));
                }
            }
            let answers = streams
                .iter()
                .map(|stream| {
                    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut line = String::new();
                    let _ = BufReader::new(stream).read_line(&mut line);
                    line.trim_end().to_string()
                })
                .collect();
            for mut stream in streams {
                let _ = stream.write_all(b"QUIT\r\n");
            }
            answers
        })
        .expect("burst runs in the namespace")
}

#[test]
fn oversized_message_and_burst_do_not_shut_the_mx() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("mx-spool-space").unwrap();
    write_configuration(&directory);
    std::fs::write(directory.join("oversized.eml"), message("too large", 4_500_000)).unwrap();
    std::fs::write(directory.join("small.eml"), message("ten kilobytes", 10 * 1024)).unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let mailbox = MailboxHost::start(&namespace, "192.168.77.1:24", "lmtp", &directory.join("mailbox")).expect("mailbox host");
    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let machine = Machine::start(&MachineConfig::on_network(elf, flash, &network), &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    let target = SocketAddrV4::new(APPLIANCE, 80);
    network
        .run_inside(move || homemx_qemu::peers::http_get(LAN_CLIENT, target, "192.168.77.2", "/health").map(|answer| answer.status))
        .unwrap()
        .expect("health answers");
    let owner = Owner {
        directory: directory.clone(),
        device: format!("unix:{}", directory.join("serial.sock").display()),
        key: directory.join("admin.key"),
    };
    assert!(owner.homemx(&["keygen", "--no-passphrase", "--out", "admin.key"]).status.success());
    assert!(owner.homemx(&["provision", "--config", "homemx.toml", "--passphrase-file", "passphrase"]).status.success());
    let send = |file: &str| {
        send_mail(&namespace, WAN_CLIENT, APPLIANCE, "someone@remote.test", &["alice@example.org"], &directory.join(file), false)
            .expect("smtp client runs")
    };

    let reply = send("oversized.eml");
    assert_eq!(code(&reply["data"]), 552, "over the size limit: {reply}");
    let answers = connection_burst(&network);
    eprintln!("burst of {BURST}: {answers:?}");
    let reply = send("small.eml");
    assert_eq!(code(&reply["data"]), 250, "a 10 KB message after the oversized one and the burst: {reply}");
    let messages = mailbox.wait_for_messages(1, Duration::from_secs(60)).expect("delivered to the mailbox host");
    assert!(messages[0].0.ends_with(&message("ten kilobytes", 10 * 1024)), "the 10 KB message arrives whole");
    let status = owner.status();
    eprintln!("status after: {status}");
}
