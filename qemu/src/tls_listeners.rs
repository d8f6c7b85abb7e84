//! The appliance's TLS listeners under test (port 25 with STARTTLS, 587 with STARTTLS and
//! AUTH, 465 with implicit TLS and AUTH), shared by `tests/inbound_tls.rs`,
//! `tests/submission_auth.rs` and `tests/testssl.rs`: one appliance booted on an isolated
//! network with an SNTP server (so it makes its self-signed certificate for `mx.example.org`)
//! and the LAN mailbox host, and the clients that probe it from inside the namespace:
//! `swaks` (Debian), `testssl.sh` (Debian; its JSON kept in `qemu/run/artifacts/`), and
//! `qemu/peers/tls_probe.py` (Python's ssl: a STARTTLS injection, bad handshakes that hold a
//! slot). Every process is started by this module and stopped by its PID.
//!
//! Calls: [`crate::machine`], [`crate::network`], [`crate::owner`], [`crate::peers`],
//! [`crate::provider`] (the SNTP server, the Python interpreter).

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::firmware::FirmwareBuild;
use crate::machine::{new_run_directory, Machine, MachineConfig};
use crate::network::{IsolatedNetwork, APPLIANCE, ROUTER};
use crate::owner::{provider_configuration, write_secrets, Owner};
use crate::peers::MailboxHost;
use crate::provider::{python, SntpConfig, SntpServer};
use crate::Result;

/// The appliance's host name (`mx.` and its first domain): its self-signed certificate's name.
pub const HOST: &str = "mx.example.org";
/// The SMTP port (STARTTLS offered to everyone).
pub const SMTP: u16 = 25;
/// The submission port (STARTTLS, then AUTH; LAN clients only).
pub const SUBMISSION: u16 = 587;
/// The submission port with implicit TLS (then AUTH; LAN clients only).
pub const SUBMISSIONS: u16 = 465;

/// An appliance with its TLS identity, the peers it needs, and its run directory.
pub struct TlsAppliance {
    /// The run directory (configuration, secrets, logs).
    pub directory: PathBuf,
    /// The owner at the console.
    pub owner: Owner,
    /// The LAN mailbox host (LMTP on the router's address, port 24).
    pub mailbox: MailboxHost,
    /// The machine.
    pub machine: Machine,
    _sntp: SntpServer,
    /// The isolated network (dropped last: the peers live in it).
    pub network: IsolatedNetwork,
}

impl TlsAppliance {
    /// Builds the firmware, boots it on a fresh isolated network, provisions it with
    /// `recipients` of example.org and the top-level keys `extra` (e.g. `lan_relay_without_auth
    /// = true`), and waits until it has its self-signed certificate (the clock set by SNTP).
    pub fn boot(label: &str, recipients: &[&str], extra: &str) -> Result<Self> {
        let elf = FirmwareBuild::QEMU.build()?;
        let directory = new_run_directory(label)?;
        write_secrets(&directory);
        // The smarthost's trust anchor (the configuration needs one; no smarthost runs here).
        let output = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=homemx unused smarthost CA", "-keyout", "ca.key", "-out", "ca.pem"])
            .current_dir(&directory)
            .output()?;
        if !output.status.success() {
            return Err(format!("openssl: {}", String::from_utf8_lossy(&output.stderr)).into());
        }
        std::fs::write(directory.join("homemx.toml"), provider_configuration(&directory.join("ca.pem"), recipients, extra))?;
        let network = IsolatedNetwork::create(&directory)?;
        let namespace = network.namespace().to_string();
        let mailbox = MailboxHost::start(&namespace, &format!("{ROUTER}:24"), "lmtp", &directory.join("mailbox"))?;
        let sntp = SntpServer::start(Some(&namespace), &SntpConfig::new(format!("{ROUTER}:123")), &directory.join("sntp"))?;
        let flash = directory.join("flash.img");
        crate::flash_image::create(&flash)?;
        let machine = Machine::start(&MachineConfig::on_network(elf, flash, &network), &directory)?;
        machine.wait_ready(0, Duration::from_secs(60))?;
        let owner = Owner::at(&directory);
        owner.try_provision()?;
        machine.log.wait_for(0, &format!("tls: self-signed certificate for {HOST} made"), Duration::from_secs(120))?;
        Ok(TlsAppliance { directory, owner, mailbox, machine, _sntp: sntp, network })
    }

    /// The namespace's name.
    pub fn namespace(&self) -> &str {
        self.network.namespace()
    }

    /// Adds a mail user with the real CLI (`homemx user add NAME --password-file F`: the
    /// configuration file is edited and pushed); the password file is written here first.
    pub fn add_user(&self, name: &str, password: &str) -> Result<()> {
        let file = format!("secrets/{}.password", name.replace('@', "-at-"));
        let path = self.directory.join(&file);
        std::fs::write(&path, format!("{password}\n"))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let output = self.owner.homemx(&["user", "add", name, "--password-file", &file]);
        if !output.status.success() {
            return Err(format!("homemx user add {name}: {}", String::from_utf8_lossy(&output.stderr)).into());
        }
        Ok(())
    }

    /// Runs `swaks` inside the namespace from `source` against the appliance's `port` with
    /// `arguments` (`--tls`, `--auth`, …); bounded to 120 s.
    pub fn swaks(&self, source: Ipv4Addr, port: u16, arguments: &[&str]) -> Result<Swaks> {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.namespace(), "swaks"]);
        command.args(["--server", &APPLIANCE.to_string(), "--port", &port.to_string(), "--local-interface", &source.to_string()]);
        command.args(["--ehlo", "client.example.org", "--timeout", "60", "--hide-informational"]).args(arguments);
        let output = run_bounded(command, Duration::from_secs(120))?;
        let swaks = Swaks { exit_code: output.0, transcript: output.1 };
        eprintln!("swaks -p {port} {}: exit {:?}\n{}", arguments.join(" "), swaks.exit_code, swaks.transcript);
        Ok(swaks)
    }

    /// One session with `qemu/peers/tls_probe.py session` (see its usage) from `source` to
    /// `port`; its JSON report.
    pub fn probe(&self, source: Ipv4Addr, port: u16, arguments: &[&str]) -> Result<Value> {
        let mut command = self.tls_probe("session", source, port);
        command.args(arguments);
        let (status, text) = run_bounded(command, Duration::from_secs(120))?;
        eprintln!("tls_probe session :{port} {}: {text}", arguments.join(" "));
        if status != Some(0) {
            return Err(format!("tls_probe failed ({status:?}): {text}").into());
        }
        Ok(serde_json::from_str(text.lines().last().unwrap_or(""))?)
    }

    /// Starts `qemu/peers/tls_probe.py hold --mode mode` from `source` on `port` (STARTTLS on
    /// 25 and 587, implicit on 465) and waits until its bad input is sent (or it was refused
    /// before TLS: see [`HeldHandshake::held`]).
    pub fn hold(&self, source: Ipv4Addr, port: u16, mode: &str, max_seconds: u64) -> Result<HeldHandshake> {
        let mut command = self.tls_probe("hold", source, port);
        command.args(["--mode", mode, "--max-seconds", &max_seconds.to_string()]);
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command.spawn()?;
        let mut reader = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let first: Value = serde_json::from_str(&line).map_err(|error| format!("tls_probe hold said {line:?}: {error}"))?;
        Ok(HeldHandshake { child: Some(child), reader, first, started: Instant::now(), port, mode: mode.to_string() })
    }

    fn tls_probe(&self, subcommand: &str, source: Ipv4Addr, port: u16) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.namespace()]).arg(python()).arg(crate::repository_root().join("qemu/peers/tls_probe.py"));
        command.args([subcommand, "--source", &source.to_string(), "--server", &format!("{APPLIANCE}:{port}")]);
        command.arg(if port == SUBMISSIONS { "--implicit" } else { "--starttls" });
        command
    }

    /// Runs `testssl.sh` inside the namespace against `port` (`--starttls smtp` on 25 and 587)
    /// with the protocol, cipher-per-protocol, forward-secrecy and vulnerability checks, bounded
    /// by `limit`; its flat JSON is kept as `qemu/run/artifacts/testssl-<label>.json` (and its
    /// text output beside it) and returned parsed.
    pub fn testssl(&self, port: u16, label: &str, limit: Duration) -> Result<TestsslReport> {
        let artifacts = crate::repository_root().join("qemu/run/artifacts");
        std::fs::create_dir_all(&artifacts)?;
        let json = artifacts.join(format!("testssl-{label}.json"));
        let _ = std::fs::remove_file(&json);
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.namespace(), "testssl"]);
        command.args(["--jsonfile"]).arg(&json);
        command.args(["--warnings", "off", "--color", "0", "--quiet", "--nodns", "none", "--connect-timeout", "20", "--openssl-timeout", "20"]);
        command.args(["-p", "-E", "-f", "-U"]);
        if port != SUBMISSIONS {
            command.args(["--starttls", "smtp"]);
        }
        command.arg(format!("{APPLIANCE}:{port}"));
        let started = Instant::now();
        let (status, text) = run_bounded(command, limit)?;
        let took = started.elapsed();
        std::fs::write(artifacts.join(format!("testssl-{label}.txt")), &text)?;
        eprintln!("testssl {label} (port {port}): exit {status:?} in {:.0} s; JSON in {}", took.as_secs_f64(), json.display());
        let findings: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&json).map_err(|error| format!("{}: {error}\n{text}", json.display()))?)?;
        Ok(TestsslReport { findings, json, took })
    }
}

/// What `swaks` did: its exit code (0: the message was accepted) and its transcript.
#[derive(Debug)]
pub struct Swaks {
    /// The exit code (`None`: killed at the time limit).
    pub exit_code: Option<i32>,
    /// stdout and stderr.
    pub transcript: String,
}

impl Swaks {
    /// The server's reply lines (`<-` in plaintext, `<~` inside TLS, `<**`/`<~*` for errors),
    /// without the arrow.
    pub fn replies(&self) -> Vec<(bool, String)> {
        self.transcript
            .lines()
            .filter_map(|line| {
                let line = line.trim_start();
                for (prefix, tls) in [("<~* ", true), ("<** ", false), ("<~ ", true), ("<- ", false)] {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Some((tls, rest.trim_start().to_string()));
                    }
                }
                None
            })
            .collect()
    }

    /// Whether a reply line (inside TLS or not) starts with `start`.
    pub fn replied(&self, start: &str) -> bool {
        self.replies().iter().any(|(_, line)| line.starts_with(start))
    }
}

/// A bad handshake holding a connection (see [`TlsAppliance::hold`]).
pub struct HeldHandshake {
    child: Option<Child>,
    reader: BufReader<std::process::ChildStdout>,
    /// Its first report: `held` true once the bad input was sent; else the replies before TLS.
    pub first: Value,
    /// When the bad input was sent.
    pub started: Instant,
    /// The port it holds.
    pub port: u16,
    /// Its mode (garbage, truncated, unfinished).
    pub mode: String,
}

impl HeldHandshake {
    /// Whether the bad input was sent (STARTTLS accepted, or the implicit-TLS port connected).
    pub fn held(&self) -> bool {
        self.first["held"] == true
    }

    /// Waits for its final report: how long the server kept the connection open
    /// (`closed_after_seconds`, null if not within its `max_seconds`), what it sent.
    pub fn finish(mut self) -> Result<Value> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        let report: Value = serde_json::from_str(&line).map_err(|error| format!("tls_probe hold ended with {line:?}: {error}"))?;
        eprintln!("held {} on {}: {report}", self.mode, self.port);
        Ok(report)
    }
}

impl Drop for HeldHandshake {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling the process this module started (not yet reaped), by its PID.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

/// testssl.sh's flat JSON findings, with the checks the tests make.
pub struct TestsslReport {
    /// Every finding (`id`, `severity`, `finding`, …).
    pub findings: Vec<Value>,
    /// Where the JSON is kept.
    pub json: PathBuf,
    /// How long the run took.
    pub took: Duration,
}

impl TestsslReport {
    /// The finding with `id`, if any.
    pub fn finding(&self, id: &str) -> Option<&Value> {
        self.findings.iter().find(|finding| finding["id"] == id)
    }

    /// Everything wrong by the rules, one sentence each (empty: A-grade): a protocol
    /// below TLS 1.2 offered, TLS 1.2 or 1.3 not offered, an offered cipher that is not AEAD
    /// or not forward-secret, a finding of severity HIGH, CRITICAL or FATAL, a vulnerability
    /// check that did not run.
    pub fn problems(&self) -> Vec<String> {
        problems(&self.findings)
    }
}

/// The vulnerability checks of `testssl -U` that must all have run (not Ticketbleed and BREACH:
/// testssl runs them on HTTPS only).
pub const VULNERABILITY_CHECKS: &[&str] = &[
    "heartbleed", "CCS", "ROBOT", "secure_renego", "secure_client_renego", "CRIME_TLS", "POODLE_SSL", "fallback_SCSV",
    "SWEET32", "FREAK", "DROWN", "LOGJAM", "BEAST", "LUCKY13", "RC4",
];

/// [`TestsslReport::problems`] over flat JSON findings.
pub fn problems(findings: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let text = |finding: &Value, field: &str| finding[field].as_str().unwrap_or("").to_string();
    let find = |id: &str| findings.iter().find(|finding| finding["id"] == id);
    for id in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        match find(id) {
            Some(finding) if text(finding, "finding").starts_with("not offered") => {}
            Some(finding) => problems.push(format!("{id}: {}", text(finding, "finding"))),
            None => problems.push(format!("{id}: not checked")),
        }
    }
    for id in ["TLS1_2", "TLS1_3"] {
        match find(id) {
            Some(finding) if text(finding, "finding").starts_with("offered") => {}
            Some(finding) => problems.push(format!("{id} must be offered: {}", text(finding, "finding"))),
            None => problems.push(format!("{id}: not checked")),
        }
    }
    let ciphers: Vec<&Value> = findings.iter().filter(|finding| text(finding, "id").starts_with("cipher-")).collect();
    if ciphers.is_empty() {
        problems.push("no cipher was listed (testssl -E)".to_string());
    }
    for cipher in ciphers {
        // "TLS 1.2   xc02c   ECDHE-ECDSA-AES256-GCM-SHA384  ECDH 253  AESGCM  256  TLS_ECDHE_…"
        let finding = text(cipher, "finding");
        let columns: Vec<&str> = finding.split_whitespace().collect();
        let Some(rfc_name) = columns.last() else { continue };
        let aead = ["_GCM_", "_CHACHA20_POLY1305_", "_CCM"].iter().any(|mode| rfc_name.contains(mode));
        let forward_secret = rfc_name.starts_with("TLS_ECDHE_") || rfc_name.starts_with("TLS_DHE_") || !rfc_name.contains("_WITH_");
        if !aead || !forward_secret {
            problems.push(format!("cipher offered that is {}: {finding}", if aead { "not forward-secret" } else { "not AEAD" }));
        }
    }
    for check in VULNERABILITY_CHECKS {
        if find(check).is_none() {
            problems.push(format!("vulnerability check {check} did not run"));
        }
    }
    for finding in findings {
        let severity = text(finding, "severity");
        if matches!(severity.as_str(), "HIGH" | "CRITICAL" | "FATAL") {
            problems.push(format!("{} {severity}: {}", text(finding, "id"), text(finding, "finding")));
        }
    }
    problems
}

/// Runs `command` (in its own process group) with stdout and stderr captured, killing the
/// group if it is not done within `limit`; its exit code and output.
fn run_bounded(mut command: Command, limit: Duration) -> Result<(Option<i32>, String)> {
    let output = tempfile_in(&std::env::temp_dir())?;
    command.stdin(Stdio::null()).stdout(output.1.try_clone()?).stderr(output.1).process_group(0);
    let mut child = command.spawn()?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            // SAFETY: the process group this function created (process_group(0)).
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&output.0).unwrap_or_default();
    let _ = std::fs::remove_file(&output.0);
    match status {
        Some(status) => Ok((status.code(), text)),
        None => Err(format!("{command:?} did not end within {limit:?}:\n{text}").into()),
    }
}

fn tempfile_in(directory: &Path) -> Result<(PathBuf, std::fs::File)> {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let number = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = directory.join(format!("homemx-output-{}-{number}.txt", std::process::id()));
    Ok((path.clone(), std::fs::File::create(&path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, severity: &str, text: &str) -> Value {
        serde_json::json!({ "id": id, "severity": severity, "finding": text })
    }

    fn clean() -> Vec<Value> {
        let mut findings = vec![
            finding("SSLv2", "OK", "not offered"),
            finding("SSLv3", "OK", "not offered"),
            finding("TLS1", "INFO", "not offered"),
            finding("TLS1_1", "INFO", "not offered"),
            finding("TLS1_2", "OK", "offered"),
            finding("TLS1_3", "OK", "offered with final"),
            finding("cipher-tls1_2_xcca9", "INFO", "TLS 1.2   xcca9   ECDHE-ECDSA-CHACHA20-POLY1305     ECDH 253   ChaCha20    256      TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
            finding("cipher-tls1_2_xc02b", "INFO", "TLS 1.2   xc02b   ECDHE-ECDSA-AES128-GCM-SHA256     ECDH 253   AESGCM      128      TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
            finding("cipher-tls1_3_x1303", "INFO", "TLS 1.3   x1303   TLS_CHACHA20_POLY1305_SHA256      ECDH 253   ChaCha20    256      TLS_CHACHA20_POLY1305_SHA256"),
        ];
        findings.extend(VULNERABILITY_CHECKS.iter().map(|check| finding(check, "OK", "not vulnerable")));
        findings
    }

    #[test]
    fn an_a_grade_listing_has_no_problems() {
        assert_eq!(problems(&clean()), Vec::<String>::new());
    }

    #[test]
    fn old_protocols_weak_ciphers_and_high_findings_are_problems() {
        let mut findings = clean();
        findings[3] = finding("TLS1_1", "LOW", "offered (deprecated)");
        findings.push(finding("cipher-tls1_2_xc009", "INFO", "TLS 1.2   xc009   ECDHE-ECDSA-AES128-SHA   ECDH 253   AES   128   TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"));
        findings.push(finding("cipher-tls1_2_x9c", "INFO", "TLS 1.2   x9c   AES128-GCM-SHA256   RSA   AESGCM   128   TLS_RSA_WITH_AES_128_GCM_SHA256"));
        findings.retain(|finding| finding["id"] != "ROBOT");
        findings.push(finding("heartbleed", "CRITICAL", "VULNERABLE"));
        let problems = problems(&findings);
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems[0].starts_with("TLS1_1: offered"), "{problems:#?}");
        assert!(problems[1].contains("not AEAD") && problems[1].contains("AES128-SHA"), "{problems:#?}");
        assert!(problems[2].contains("not forward-secret") && problems[2].contains("TLS_RSA_WITH"), "{problems:#?}");
        assert_eq!(problems[3], "vulnerability check ROBOT did not run");
        assert_eq!(problems[4], "heartbleed CRITICAL: VULNERABLE");
    }

    #[test]
    fn swaks_replies_are_read_with_their_channel() {
        let swaks = Swaks {
            exit_code: Some(28),
            transcript: "<-  220 mx.example.org ESMTP\n -> EHLO x\n<-  250-mx.example.org\n<-  250 STARTTLS\n<~  250 AUTH PLAIN LOGIN\n<~*  535 5.7.8 Authentication credentials invalid\n".into(),
        };
        let replies = swaks.replies();
        assert_eq!(replies.len(), 5);
        assert_eq!(replies[4], (true, "535 5.7.8 Authentication credentials invalid".to_string()));
        assert!(swaks.replied("535 5.7.8") && !swaks.replied("250 AUTH PLAIN LOGIN x"));
    }
}
