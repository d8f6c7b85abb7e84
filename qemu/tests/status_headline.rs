//! The status page's headline tells the truth (issue 18): with the LAN mailbox host up and
//! the clock set by SNTP it says "Mail flows" after a delivery; when the mailbox host goes
//! away, the connection probe names it within one probe interval ("Mailbox host unreachable
//! since HH:MM UTC"); when it is back on the same address, mail flows again. `homemx status`
//! shows the same line. Without a time server the headline says the clock is not set.
//! Screenshots of each state (mail flows, the mailbox host unreachable, mail flows again) go to
//! qemu/run/artifacts/.

use std::time::{Duration, Instant};

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::machine::{new_run_directory, Machine};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT, ROUTER, WAN_CLIENT};
use homemx_qemu::owner::{provider_configuration, write_secrets, Owner};
use homemx_qemu::peers::{send_mail, MailboxHost};
use homemx_qemu::provider::{SntpConfig, SntpServer, TestCa};
use homemx_qemu::status_page::{get, headline, screenshot, status_json};
use serde_json::Value;

/// The firmware's probe interval (`firmware/app/src/mailbox_probe.rs`: `PROBE_INTERVAL`): it
/// probes early enough (45 s after the last contact, with its 5 s poll and 10 s probe timeout)
/// that an outage is named within one interval of its start.
const PROBE_INTERVAL: Duration = Duration::from_secs(60);
/// Beyond one probe interval, room for a loaded host (QEMU's timers follow it) and this test's
/// once-a-second look at `/status.json`; how long it took is printed beside the interval.
const MARGIN: Duration = Duration::from_secs(30);
const MAILBOX_LISTEN: &str = "192.168.77.1:24";

/// Polls `/status.json` until its verdict is `verdict`; returns that document.
fn wait_for_verdict(network: &IsolatedNetwork, verdict: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let status = status_json(network);
        if status["verdict"] == verdict {
            return status;
        }
        assert!(Instant::now() < deadline, "no verdict {verdict:?} within {timeout:?}: {status}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The page's `<h1>`.
fn page_headline(network: &IsolatedNetwork) -> String {
    let page = get(network, LAN_CLIENT, &APPLIANCE.to_string(), "/");
    headline(&page.body).unwrap_or_else(|| panic!("no <h1>: {page:?}")).to_string()
}

/// The first line of `homemx status`.
fn cli_headline(owner: &Owner) -> String {
    let output = owner.homemx(&["status"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().next().unwrap_or_default().to_string()
}

/// A provisioned appliance on a fresh isolated network (SNTP on the router if `time_server`).
struct Rig {
    // Field order is drop order: QEMU first, then the peers, the namespace last.
    _machine: Machine,
    _sntp: Option<SntpServer>,
    network: IsolatedNetwork,
    owner: Owner,
}

fn provisioned(name: &str, time_server: bool) -> (Rig, MailboxHost) {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory(name).unwrap();
    let ca = TestCa::create(&directory.join("ca")).expect("test CA");
    write_secrets(&directory);
    std::fs::write(directory.join("homemx.toml"), provider_configuration(&ca.ca_certificate, &["alice@example.org"], "")).unwrap();
    std::fs::write(directory.join("message.eml"), b"Subject: in\r\n\r\nhello\r\n").unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let sntp = time_server.then(|| {
        SntpServer::start(Some(namespace.as_str()), &SntpConfig::new(format!("{ROUTER}:123")), &directory.join("sntp")).expect("SNTP server")
    });
    let mailbox = MailboxHost::start(&namespace, MAILBOX_LISTEN, "lmtp", &directory.join("mailbox")).expect("mailbox host");
    let (machine, owner) = homemx_qemu::owner::boot_provisioned(elf, &network, &directory);
    (Rig { _machine: machine, _sntp: sntp, network, owner }, mailbox)
}

#[test]
fn the_headline_names_the_unreachable_mailbox_host_and_says_mail_flows_when_it_is_back() {
    let (rig, mailbox) = provisioned("status-headline", true);
    let network = &rig.network;
    let namespace = network.namespace().to_string();
    let directory = rig.owner.directory.clone();

    // A message from the internet reaches the mailbox host: mail flows.
    let reply = send_mail(&namespace, WAN_CLIENT, format!("{APPLIANCE}:25"), "bob@remote.example", &["alice@example.org"], &directory.join("message.eml"), false)
        .expect("smtp client runs");
    assert_eq!(reply["data"][0], 250, "{reply}");
    mailbox.wait_for_messages(1, Duration::from_secs(60)).expect("delivered to the mailbox host");
    let status = wait_for_verdict(network, "ok", Duration::from_secs(60));
    assert_eq!(status["headline"], "Mail flows — no alerts", "{status}");
    assert_eq!(status["problems"], serde_json::json!([]), "{status}");
    assert!(status["mailbox"]["last_success_unix"].as_u64().is_some_and(|unix| unix > 1_700_000_000), "{status}");
    assert_eq!(page_headline(network), "Mail flows — no alerts");
    assert_eq!(cli_headline(&rig.owner), "Mail flows — no alerts");
    screenshot(network, &directory, "status-headline-mail-flows.png");

    // The mailbox host goes away (the spool is empty: only the probe can notice).
    drop(mailbox);
    let stopped = Instant::now();
    let status = wait_for_verdict(network, "mailbox_unreachable", PROBE_INTERVAL + MARGIN);
    eprintln!(
        "the headline named the unreachable mailbox host {:?} after it stopped (one probe interval: {PROBE_INTERVAL:?})",
        stopped.elapsed()
    );
    let headline = status["headline"].as_str().unwrap().to_string();
    assert!(headline.starts_with("Mailbox host unreachable since ") && headline.ends_with(" UTC"), "{status}");
    assert_eq!(status["problems"], serde_json::json!(["mailbox_unreachable"]), "{status}");
    assert_eq!(status["mailbox"]["failure"], "unreachable", "{status}");
    let since = status["mailbox"]["failing_since_unix"].as_u64().expect("the outage's start is known");
    let generated = status["generated_unix"].as_u64().unwrap();
    assert!(since <= generated && generated - since <= (PROBE_INTERVAL + MARGIN).as_secs(), "{status}");
    // The page's headline gives the outage's start as HH:MM UTC, like the JSON's.
    let clock = format!("{:02}:{:02} UTC", since % 86_400 / 3600, since % 3600 / 60);
    assert_eq!(headline, format!("Mailbox host unreachable since {clock}"));
    assert_eq!(page_headline(network), headline);
    assert_eq!(cli_headline(&rig.owner), headline);
    screenshot(network, &directory, "status-headline-mailbox-unreachable.png");

    // It comes back on the same address: the next probe says mail flows again.
    let mailbox = MailboxHost::start(&namespace, MAILBOX_LISTEN, "lmtp", &directory.join("mailbox-again")).expect("mailbox host again");
    let restarted = Instant::now();
    let status = wait_for_verdict(network, "ok", PROBE_INTERVAL + MARGIN);
    eprintln!("mail flows again {:?} after the mailbox host restarted (one probe interval: {PROBE_INTERVAL:?})", restarted.elapsed());
    assert_eq!(status["headline"], "Mail flows — no alerts", "{status}");
    assert_eq!(status["mailbox"]["failing_since_unix"], Value::Null, "{status}");
    assert_eq!(page_headline(network), "Mail flows — no alerts");
    screenshot(network, &directory, "status-headline-mail-flows-again.png");
    assert!(mailbox.messages().is_empty(), "the probe delivers nothing");
    homemx_qemu::peers::assert_short_polls(network);
}

#[test]
fn without_a_time_server_the_headline_says_the_clock_is_not_set() {
    let (rig, _mailbox) = provisioned("status-headline-no-clock", false);
    // The probe reaches the mailbox host; only the clock is missing.
    let status = wait_for_verdict(&rig.network, "clock_not_set", Duration::from_secs(60));
    let headline = status["headline"].as_str().unwrap().to_string();
    assert!(headline.starts_with("Clock not set: no time server answered"), "{status}");
    assert_eq!(status["problems"], serde_json::json!(["clock_not_set"]), "{status}");
    assert_eq!(status["generated_unix"], Value::Null, "{status}");
    assert!(status["mailbox"]["last_success_age_seconds"].as_u64().is_some(), "the mailbox host was reached: {status}");
    assert_eq!(page_headline(&rig.network), headline);
    assert_eq!(cli_headline(&rig.owner), headline);
}
