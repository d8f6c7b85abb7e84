//! The DynDNS guard end to end: an authoritative DNS server (dnslib) with the test zones, a
//! dyndns2 update service and two check-IP services over HTTPS (TLS 1.3, test CA), all under
//! the test's control. A new public address gives exactly one update (and none at the next
//! check); an A record flipped by a third party and an MX pointed elsewhere raise the
//! "possible mail diversion" alarms and the A record is corrected; check-IP garbage is
//! ignored; one broken check-IP source does not silence the diversion alarms (and three such
//! checks raise `check_ip_unreliable`); `badauth` stops all updates and raises the alert.

use std::net::SocketAddrV4;
use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::dyndns_rig::DynDnsRig;
use homemx_qemu::machine::new_run_directory;
use homemx_qemu::network::{APPLIANCE, LAN_CLIENT};
use homemx_qemu::peers::http_get;
use homemx_qemu::owner::{CHECKIP_SERVER, DYNDNS_HOST, DYNDNS_SERVER, DYNDNS_USER};
use homemx_qemu::provider::{
    a_record, write_json_atomically, HttpsEndpoints, TestCa, CHECKIP_NAME, DYNDNS_NAME,
};
use serde_json::{json, Value};

const HOST: &str = DYNDNS_HOST;
const USER: &str = DYNDNS_USER;
const OUR_ADDRESS: &str = "198.51.100.7";
const CHECK: Duration = Duration::from_secs(100);

fn zone(a: &str, mx: &str) -> Value {
    json!({
        "ttl": 60,
        "names": {
            DYNDNS_NAME: {"A": [DYNDNS_SERVER.to_string()]},
            CHECKIP_NAME: {"A": [CHECKIP_SERVER.to_string()]},
            HOST: {"A": [a]},
            "example.org": {"MX": [{"preference": 10, "exchange": mx}]},
        }
    })
}

fn updates(endpoints: &HttpsEndpoints) -> Vec<Value> {
    endpoints.requests().into_iter().filter(|request| request["path"].as_str().is_some_and(|path| path.starts_with("/nic/update"))).collect()
}

#[test]
fn dyndns_updates_once_detects_diversion_ignores_garbage_and_stops_on_badauth() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("dyndns").unwrap();
    let ca = TestCa::create(&directory.join("ca")).expect("test CA");
    let rig = DynDnsRig::start(&directory, &ca, &zone("198.51.100.1", HOST), OUR_ADDRESS);
    let (network, zone_file, endpoints) = (&rig.network, &rig.zone_file, &rig.endpoints);

    let (machine, owner) = homemx_qemu::owner::boot_provisioned(elf, network, &directory);
    machine.log.wait_for(0, "time: clock set", Duration::from_secs(60)).expect("the clock is set");
    // A check now (`homemx fetch-now` also checks DynDNS); returns the log position after it.
    let check_now = |from: usize| -> usize {
        assert!(owner.homemx(&["fetch-now"]).status.success());
        machine.log.wait_for(from, "dyndns: checked", CHECK).expect("a DynDNS check runs");
        let lines = machine.log.lines();
        let line = from + lines[from..].iter().position(|line| line.contains("dyndns: checked")).unwrap() + 1;
        std::thread::sleep(Duration::from_secs(3));
        line
    };
    // The guard spaces updates by the check interval (60 s here) of the appliance's clock,
    // which under a loaded QEMU runs slower than the host's: wait in guest time, 62 s after
    // the last update's log line.
    let spacing = || {
        let last_update: f64 = machine
            .log
            .lines()
            .iter()
            .rfind(|line| line.contains("dyndns: update of"))
            .and_then(|line| line.split_whitespace().next()?.parse().ok())
            .expect("an update was logged");
        loop {
            let target = SocketAddrV4::new(APPLIANCE, 80);
            let health = network.run_inside(move || http_get(LAN_CLIENT, target, "192.168.77.2", "/health")).unwrap().expect("health");
            let uptime = serde_json::from_str::<Value>(&health.body).unwrap()["uptime_seconds"].as_f64().unwrap_or(0.0);
            if uptime >= last_update + 62.0 {
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    };

    // 1. A new public address: exactly one update, over TLS 1.3, with Basic auth and our
    //    User-Agent; DNS follows; the next check sends nothing.
    machine.log.wait_for(0, "dyndns: checked", CHECK).expect("the first check runs at unlock");
    std::thread::sleep(Duration::from_secs(3));
    let mut line = machine.log.lines().len();
    let sent = updates(endpoints);
    assert_eq!(sent.len(), 1, "one update: {sent:?}");
    assert_eq!(sent[0]["auth_user"], USER);
    assert_eq!(sent[0]["tls_version"], "TLSv1.3");
    assert!(sent[0]["user_agent"].as_str().unwrap_or("").starts_with("homemx/"), "{}", sent[0]);
    assert!(sent[0]["query"].to_string().contains(OUR_ADDRESS), "{}", sent[0]);
    assert_eq!(a_record(zone_file, HOST), Some(OUR_ADDRESS.parse().unwrap()));
    line = check_now(line);
    assert_eq!(updates(endpoints).len(), 1, "no second update for the same address");

    // 2. A third party points the A record elsewhere and the MX at another host: both are
    //    alarms, and the A record is corrected.
    write_json_atomically(zone_file, &zone("203.0.113.99", "mx.elsewhere.example")).unwrap();
    spacing();
    line = check_now(line);
    machine.log.wait_for(0, "ALERT public_address_mismatch", Duration::from_secs(10)).expect("A record alarm");
    machine.log.wait_for(0, "ALERT mx_mismatch", Duration::from_secs(10)).expect("MX alarm");
    assert_eq!(updates(endpoints).len(), 2, "one corrective update");
    assert_eq!(a_record(zone_file, HOST), Some(OUR_ADDRESS.parse().unwrap()), "the A record is ours again");
    write_json_atomically(zone_file, &zone(OUR_ADDRESS, HOST)).unwrap();

    // 3. Check-IP garbage is ignored: no update.
    endpoints.set_control(&json!({"ip_body": "<html>your address is 999.1.2.3 or so</html>"})).unwrap();
    line = check_now(line);
    machine.log.wait_for(0, "gave no usable address", Duration::from_secs(10)).expect("garbage noticed");
    assert_eq!(updates(endpoints).len(), 2, "garbage changes nothing");

    // 3b. An attacker breaks one check-IP source (junk) and diverts the mail at once: the MX
    //     check still runs, the A check runs against the last agreed address, both alarms are
    //     raised, and nothing is updated on unverified information. Checks in a row without
    //     two agreeing sources raise check_ip_unreliable.
    endpoints.set_control(&json!({"ip_body": OUR_ADDRESS, "ip_body_by_host": {DYNDNS_NAME: "<html>no address today</html>"}})).unwrap();
    write_json_atomically(zone_file, &zone("203.0.113.99", "mx.elsewhere.example")).unwrap();
    let from = line;
    line = check_now(line);
    machine.log.wait_for(from, "ALERT mx_mismatch", Duration::from_secs(10)).expect("MX alarm although one check-IP source is broken");
    machine.log.wait_for(from, "ALERT public_address_mismatch", Duration::from_secs(10)).expect("A alarm against the last agreed address");
    line = check_now(line);
    line = check_now(line);
    machine.log.wait_for(from, "ALERT check_ip_unreliable", Duration::from_secs(10)).expect("three checks without agreement alert");
    let target = SocketAddrV4::new(APPLIANCE, 80);
    let status = network.run_inside(move || http_get(LAN_CLIENT, target, "192.168.77.2", "/status.json")).unwrap().expect("status");
    for kind in ["check_ip_unreliable", "mx_mismatch", "public_address_mismatch"] {
        assert!(status.body.contains(kind), "{kind} on the status page: {}", status.body);
    }
    assert_eq!(updates(endpoints).len(), 2, "no update while the sources do not agree");
    assert_eq!(a_record(zone_file, HOST), Some("203.0.113.99".parse().unwrap()));
    write_json_atomically(zone_file, &zone(OUR_ADDRESS, HOST)).unwrap();

    // 4. A new address answered with badauth: updates stop and the alert is raised.
    endpoints.set_control(&json!({"ip_body": "198.51.100.8", "dyndns_answers": ["badauth"]})).unwrap();
    spacing();
    line = check_now(line);
    machine.log.wait_for(0, "ALERT dyndns_stopped", Duration::from_secs(10)).expect("badauth stops updates");
    assert_eq!(updates(endpoints).len(), 3);
    spacing();
    line = check_now(line);
    assert_eq!(updates(endpoints).len(), 3, "no update after badauth until the owner acts");

    // 5. The owner fixed the account and resumes: the alert clears and the update goes out.
    assert!(owner.homemx(&["dyndns-resume"]).status.success());
    machine.log.wait_for(line, "dyndns: updates resumed by the owner", Duration::from_secs(10)).expect("resumed");
    machine.log.wait_for(line, "dyndns: update of", CHECK).expect("the update after the resume");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(updates(endpoints).len(), 4, "one update after the resume");
    let target = SocketAddrV4::new(APPLIANCE, 80);
    let status = network.run_inside(move || http_get(LAN_CLIENT, target, "192.168.77.2", "/status.json")).unwrap().expect("status");
    assert!(!status.body.contains("dyndns_stopped"), "the alert is cleared: {}", status.body);
    // The DynDNS checks run the courier's deepest HTTPS path (DNS judgement, check-IP and update
    // requests over TLS): the stack stays within its budget.
    let health = network.run_inside(move || http_get(LAN_CLIENT, target, "192.168.77.2", "/health")).unwrap().expect("health");
    let health: Value = serde_json::from_str(&health.body).unwrap();
    homemx_qemu::budgets::assert_stack_within_budget("after the DynDNS checks and updates", health["stack_high_water_bytes"].as_u64().unwrap_or(0));
    eprintln!(
        "dyndns: {} check-IP requests and {} updates over the test; DNS queries: {}",
        endpoints.requests().len() - updates(endpoints).len(),
        updates(endpoints).len(),
        rig.dns.queries().len()
    );
}
