//! End to end on the isolated network: the appliance boots from its flash, gets its address
//! by DHCP, tells LAN peers from WAN peers by their source addresses, answers `/health` on
//! the LAN only, echoes UDP for the LAN only, answers on its serial console, and keeps its
//! flash across a power cut.

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT, WAN_CLIENT};
use homemx_qemu::owner::console_exchange;
use homemx_qemu::{flash_image, peers};
use homemx_wire::message::Response;

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

fn start(network: &IsolatedNetwork, elf: &Path, flash: &Path, directory: &Path) -> Machine {
    let config = MachineConfig::on_network(elf.to_path_buf(), flash.to_path_buf(), network);
    Machine::start(&config, directory).expect("QEMU starts")
}

#[test]
fn lan_and_wan_peers_are_told_apart_and_udp_round_trips() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("bring-up").unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let machine = start(&network, &elf, &flash, &directory);
    let ready = machine.wait_ready(0, BOOT_TIMEOUT).expect("firmware becomes ready");
    assert!(ready.contains("192.168.77.2"), "DHCP reservation used: {ready}");

    let health = SocketAddrV4::new(APPLIANCE, 80);
    let echo = SocketAddrV4::new(APPLIANCE, 7);
    // A head near the 2 KB limit passes the socket's 512-byte receive window in pieces; one
    // over it gets 431.
    let long_path = format!("/health?{}", "a".repeat(1900));
    let too_long_path = format!("/health?{}", "a".repeat(2100));
    let (long_head, too_long_head) = network
        .run_inside(move || {
            (
                peers::http_get(LAN_CLIENT, health, "192.168.77.2", &long_path).expect("LAN GET with a long head"),
                peers::http_get(LAN_CLIENT, health, "192.168.77.2", &too_long_path).expect("LAN GET with a too long head"),
            )
        })
        .unwrap();
    assert_eq!(long_head.status, 200, "{long_head:?}");
    assert_eq!(too_long_head.status, 431, "{too_long_head:?}");
    let (lan, wan, wrong_host, lan_udp, wan_udp) = network
        .run_inside(move || {
            (
                peers::http_get(LAN_CLIENT, health, "192.168.77.2", "/health").expect("LAN GET /health"),
                peers::http_get(WAN_CLIENT, health, "192.168.77.2", "/health").expect("WAN GET /health"),
                peers::http_get(LAN_CLIENT, health, "mail.attacker.example", "/health").expect("rebinding GET"),
                peers::udp_round_trip(LAN_CLIENT, echo, b"homemx udp probe 1", Duration::from_secs(3)).unwrap(),
                peers::udp_round_trip(WAN_CLIENT, echo, b"homemx udp probe 2", Duration::from_secs(2)).unwrap(),
            )
        })
        .unwrap();

    assert_eq!(lan.status, 200, "{lan:?}");
    let document: serde_json::Value = serde_json::from_str(&lan.body).expect("health is JSON");
    assert_eq!(document["firmware"], "homemx");
    assert_eq!(document["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(document["board"], "qemu-mps2-an386");
    assert_eq!(document["link"], "up");
    assert_eq!(document["address"], "192.168.77.2/24");
    assert!(document["uptime_seconds"].as_u64().is_some());
    let stack = document["stack_high_water_bytes"].as_u64().expect("the stack high-water mark is reported");
    homemx_qemu::budgets::assert_stack_within_budget("after boot and a few requests", stack);
    assert_eq!(document["client"], "192.168.77.10", "LAN peer seen with its own address");
    assert!(lan.headers.contains("Content-Security-Policy: default-src 'none'"));

    assert_eq!(wan.status, 403, "WAN peer refused: {wan:?}");
    machine.log.wait_for(0, "refused non-LAN peer 203.0.113.10", Duration::from_secs(5)).expect("WAN peer seen with its own address");
    assert_eq!(wrong_host.status, 421, "foreign Host: refused: {wrong_host:?}");

    let (reply, from) = lan_udp.expect("UDP echo answers the LAN");
    assert_eq!(reply, b"homemx udp probe 1");
    assert_eq!(from, std::net::SocketAddr::from(echo));
    assert!(wan_udp.is_none(), "UDP echo must not answer the WAN");
    machine.log.wait_for(0, "udp echo: ignored datagram from non-LAN 203.0.113.10", Duration::from_secs(5)).unwrap();

    // The serial console answers the wire protocol's hello with who it is.
    let mut hello = [0u8; 64];
    let length = homemx_wire::client::ClientSession::hello_frame(&mut hello).unwrap();
    let mut request = vec![0u8];
    request.extend_from_slice(&hello[..length]);
    match console_exchange(&machine.run_directory().join("serial.sock"), &request).expect("console answers") {
        Response::DeviceInfo(info) => {
            assert_eq!(info.firmware_version.as_str(), env!("CARGO_PKG_VERSION"));
            assert_eq!(info.board.as_str(), "qemu-mps2-an386");
        }
        other => panic!("hello answered with {other:?}"),
    }
}

#[test]
fn flash_survives_a_power_cut_and_the_entropy_seed_ratchets_every_boot() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("flash-persistence").unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    assert_eq!(flash_image::seed_generation(&flash).unwrap(), Some(0));
    for boot in 1..=3 {
        let before = flash_image::seed_records(&flash).unwrap();
        let (_, used_seed) = *before.iter().max_by_key(|(generation, _)| *generation).expect("a seed on flash");
        let mut machine = start(&network, &elf, &flash, &directory);
        machine.wait_ready(0, BOOT_TIMEOUT).expect("firmware becomes ready");
        // Read while the board still runs: the seed this boot's stream came from must be gone
        // already (the flash file is the PSRAM's backing store, shared with QEMU).
        let running = std::fs::read(&flash).unwrap();
        machine.kill();
        assert_eq!(flash_image::seed_generation(&flash).unwrap(), Some(boot), "boot {boot} ratcheted the seed on flash");
        let after = flash_image::seed_records(&flash).unwrap();
        assert_eq!(after.iter().map(|(generation, _)| *generation).collect::<Vec<_>>(), vec![boot], "only the successor seed is on flash after boot {boot}");
        for (label, image) in [("while running", running), ("after the boot", std::fs::read(&flash).unwrap())] {
            let copies = image.windows(used_seed.len()).filter(|window| *window == used_seed).count();
            assert_eq!(copies, 0, "boot {boot}: the seed its stream came from is still on flash {label}");
        }
    }
}
