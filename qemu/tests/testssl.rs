//! testssl.sh (Debian's 3.0.8) against the appliance's three TLS listeners, one booted
//! appliance with its self-signed certificate: port 25 and 587 with `--starttls smtp`, 465
//! with implicit TLS. Protocols, every cipher per protocol, forward secrecy and the known
//! vulnerabilities (`-p -E -f -U`); the JSON of each run is kept in `qemu/run/artifacts/`
//! (`testssl-port-25.json`, …) and asserted on: no SSLv2, SSLv3, TLS 1.0 or 1.1; TLS 1.2 and
//! 1.3 offered; no cipher that is not AEAD or not forward-secret; every vulnerability check ran
//! and nothing is HIGH or CRITICAL. The runs are one after the other: the device's TLS slots
//! are few, and a scanner that found them busy would report the refusals, not the listener.

use std::time::{Duration, Instant};

use homemx_qemu::tls_listeners::{TlsAppliance, SMTP, SUBMISSION, SUBMISSIONS};

/// The most one testssl.sh run may take (it makes a few hundred handshakes, each a few
/// hundred milliseconds in QEMU).
const RUN_LIMIT: Duration = Duration::from_secs(420);

#[test]
fn every_tls_listener_is_a_grade_for_testssl() {
    let started = Instant::now();
    let appliance = TlsAppliance::boot("testssl", &["alice@example.org"], "").expect("the appliance boots with its certificate");
    eprintln!("booted, provisioned, certificate made in {:.0} s", started.elapsed().as_secs_f64());
    let mut failures = Vec::new();
    for port in [SMTP, SUBMISSION, SUBMISSIONS] {
        let label = format!("port-{port}");
        let report = appliance.testssl(port, &label, RUN_LIMIT).unwrap_or_else(|error| panic!("testssl on {port}: {error}"));
        let ciphers: Vec<String> = report
            .findings
            .iter()
            .filter(|finding| finding["id"].as_str().is_some_and(|id| id.starts_with("cipher-")))
            .map(|finding| finding["finding"].as_str().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        eprintln!("port {port}: {} findings in {:.0} s; ciphers offered:\n  {}", report.findings.len(), report.took.as_secs_f64(), ciphers.join("\n  "));
        failures.extend(report.problems().into_iter().map(|problem| format!("port {port}: {problem} ({})", report.json.display())));
    }
    assert!(failures.is_empty(), "testssl.sh findings:\n{}", failures.join("\n"));
    eprintln!("testssl: {:.0} s in all", started.elapsed().as_secs_f64());
}
