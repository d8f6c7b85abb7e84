//! The throughput comparison's peers themselves, on 127.0.0.1: Postfix as the MX of
//! example.org takes a small load from the SMTP load generator (every message answered `250`
//! lands in the Maildir, once), refuses an unknown recipient (counted as a failure with its
//! reason, not retried), and its processes' memory is read while it runs.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use homemx_qemu::machine::new_run_directory;
use homemx_qemu::postfix_mx::{PostfixMx, PostfixMxConfig};
use homemx_qemu::process_memory::peak_while;
use homemx_qemu::smtp_load::{run_load, LoadConfig};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn postfix_mx_takes_a_load_into_its_maildir() {
    let directory = new_run_directory("postfix-mx-peer").unwrap();
    let config = PostfixMxConfig { listen: SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port()), ..PostfixMxConfig::new(Ipv4Addr::LOCALHOST) };
    let mut postfix = PostfixMx::start(None, &config, &directory.join("postfix")).expect("Postfix starts");
    let pid = postfix.pid().unwrap();

    let load = LoadConfig::new(config.listen, &[Ipv4Addr::LOCALHOST], 3, 30, 10 * 1024, &config.recipient);
    let (report, peak) = peak_while(pid, Duration::from_millis(50), || run_load(&load)).unwrap();
    let report = report.unwrap();
    eprintln!("{}; peak PSS {} KiB in {} processes", report.summary(), peak.proportional_set_size / 1024, peak.processes);
    assert_eq!((report.accepted, report.failed), (30, 0), "{report:?}");
    assert_eq!(postfix.wait_for_delivered(30, Duration::from_secs(60)).unwrap(), 30);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(postfix.delivered(), 30, "each message once");
    let message = std::fs::read_dir(postfix.maildir().join("new")).unwrap().next().unwrap().unwrap().path();
    let text = std::fs::read_to_string(message).unwrap();
    assert!(text.contains("Subject: load message ") && text.contains("the quick brown fox"), "{text}");
    assert!(peak.processes >= 3, "master, smtpd, cleanup and more: {peak:?}");
    assert!(peak.proportional_set_size > 1024 * 1024 && peak.proportional_set_size <= peak.resident_set_size, "{peak:?}");

    let unknown = LoadConfig::new(config.listen, &[Ipv4Addr::LOCALHOST], 1, 1, 1024, "nobody@example.org");
    let report = run_load(&unknown).unwrap();
    assert_eq!((report.accepted, report.failed, report.temporary_refusals), (0, 1, 0), "{report:?}");
    assert!(report.reasons.keys().any(|reason| reason.starts_with("RCPT: 550")), "{report:?}");

    postfix.stop();
    assert!(postfix.memory().is_err(), "stopped");
    assert!(directory.join("postfix/postfix.log").exists(), "the log is kept");
}
