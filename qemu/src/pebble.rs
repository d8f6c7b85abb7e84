//! The ACME tests' world: Pebble (Let's Encrypt's test CA, Debian `pebble`) inside the test's
//! network namespace on a WAN address, its HTTPS certificate from the test CA, its DNS at the
//! test DNS server (which maps [`HOST`] to the appliance), its validation arriving at the
//! appliance from a WAN address (a route in the namespace gives every connection it opens to
//! the appliance the WAN client's source address); the configuration with `[tls.acme]`; and
//! what a peer sees of it: `curl` from an address in the namespace, and port 25's chain as
//! `openssl s_client -starttls smtp -verify_return_error` with one CA file sees it.
//!
//! Owns: nothing beyond the processes and network it starts (Pebble stopped by its PID, when
//! asked or dropped). Calls: `network`, `owner`, `provider`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::network::{IsolatedNetwork, APPLIANCE, ROUTER, WAN_CLIENT};
use crate::owner::{provider_configuration, write_secrets};
use crate::provider::{add_wan_address, write_json_atomically, DnsServer, SntpConfig, SntpServer, TestCa};

/// The appliance's name: the certificate is for it.
pub const HOST: &str = "mx.example.org";
/// The ACME server's name (its HTTPS certificate from the test CA).
pub const ACME_NAME: &str = "acme.example.net";
/// Pebble's WAN address inside the namespace (documentation range).
pub const ACME_SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 30);
/// Pebble's ACME port.
pub const ACME_PORT: u16 = 14000;
/// Pebble's management port (its roots: `/roots/0`).
pub const MANAGEMENT_PORT: u16 = 15000;
/// The challenge the appliance answers (`[tls.acme] challenge`).
pub const CHALLENGE: &str = "http-01";

/// How Pebble runs.
#[derive(Clone, Copy, Debug)]
pub struct PebbleConfig {
    /// The ports its validation connects to for HTTP-01 and TLS-ALPN-01.
    pub http_port: u16,
    /// See `http_port`.
    pub tls_port: u16,
    /// The certificates' lifetime in seconds (`None`: Pebble's default, 5 years).
    pub validity_seconds: Option<u64>,
    /// Pebble's random wait (up to 5 s) before each validation; off, it validates at once.
    pub validation_wait: bool,
}

impl Default for PebbleConfig {
    /// Validation on the appliance's ports 80 and 443, Pebble's default lifetime.
    fn default() -> Self {
        PebbleConfig { http_port: 80, tls_port: 443, validity_seconds: None, validation_wait: false }
    }
}

/// Pebble inside the namespace, stopped by its PID on [`Pebble::stop`] or drop.
pub struct Pebble {
    child: Option<Child>,
    directory: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

fn require_pebble() -> PathBuf {
    for directory in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let path = Path::new(directory).join("pebble");
        if path.exists() {
            return path;
        }
    }
    panic!("pebble is not installed: run host-tools/setup.sh (Debian package `pebble`)");
}

impl Pebble {
    /// Starts Pebble in `namespace` on [`ACME_SERVER`], HTTPS with the test CA's leaf for
    /// [`ACME_NAME`], its DNS at the test DNS server on the router; waits until it listens.
    /// Its files and log (`pebble.log`) are in `directory`.
    pub fn start(namespace: &str, ca: &TestCa, directory: &Path, config: PebbleConfig) -> Pebble {
        let pebble = require_pebble();
        std::fs::create_dir_all(directory).unwrap();
        let leaf = ca.leaf(ACME_NAME).expect("a leaf for the ACME server");
        let mut settings = json!({
            "listenAddress": format!("{ACME_SERVER}:{ACME_PORT}"),
            "managementListenAddress": format!("{ACME_SERVER}:{MANAGEMENT_PORT}"),
            "certificate": leaf.certificate, "privateKey": leaf.key,
            "httpPort": config.http_port, "tlsPort": config.tls_port, "ocspResponderURL": "", "externalAccountBindingRequired": false,
        });
        if let Some(seconds) = config.validity_seconds {
            settings["certificateValidityPeriod"] = json!(seconds);
        }
        std::fs::write(directory.join("pebble.json"), serde_json::to_vec_pretty(&json!({"pebble": settings})).unwrap()).unwrap();
        let log = std::fs::File::create(directory.join("pebble.log")).unwrap();
        // `ip netns exec` execs Pebble: the child's PID is Pebble's.
        let (wait, wait_value) = if config.validation_wait { ("PEBBLE_VA_SLEEPTIME", "5") } else { ("PEBBLE_VA_NOSLEEP", "1") };
        let child = Command::new("ip")
            .args(["netns", "exec", namespace])
            .arg(pebble)
            .args(["-config", "pebble.json", "-dnsserver", &format!("{ROUTER}:53")])
            .env(wait, wait_value)
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .current_dir(directory)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble starts");
        let pebble = Pebble { child: Some(child), directory: directory.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pebble.log().contains("Listening on") {
            assert!(Instant::now() < deadline, "Pebble did not start: {}", pebble.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        pebble
    }

    /// Pebble's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.join("pebble.log")).unwrap_or_default()
    }

    /// Stops Pebble (its PID, the harness's own child) and waits for it; it forgets its roots,
    /// accounts and orders.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Writes Pebble's root (PEM, from the management port) to `file`: the one trust anchor of
    /// the certificates it issues (a new one at each start).
    pub fn write_root(&self, namespace: &str, file: &Path) {
        let (status, root) = curl(namespace, ROUTER, &["-k", &format!("https://{ACME_SERVER}:{MANAGEMENT_PORT}/roots/0")]);
        assert_eq!(status, 200, "Pebble's root: {root}");
        std::fs::write(file, &root).unwrap();
    }
}

/// The configuration, the network and the peers Pebble needs (DNS, SNTP), started once.
/// Fields drop in this order: the peers, then the network.
pub struct AcmeRig {
    /// The SNTP server (the appliance's clock 5 s ahead of the host's: Pebble's certificates
    /// start "now").
    pub sntp: SntpServer,
    /// The DNS server (its queries).
    pub dns: DnsServer,
    /// The test CA (the providers' certificates and Pebble's HTTPS certificate).
    pub ca: TestCa,
    /// The isolated network.
    pub network: IsolatedNetwork,
}

impl AcmeRig {
    /// Writes `homemx.toml` (the users `alice@example.org`, the providers of the test CA,
    /// `[tls.acme]` for [`HOST`] from Pebble with [`CHALLENGE`]) and the secrets in
    /// `directory`, creates the network with Pebble's WAN address and the route that makes its
    /// validation come from the WAN, and starts DNS ([`ACME_NAME`] and [`HOST`]) and SNTP.
    pub fn start(directory: &Path) -> AcmeRig {
        AcmeRig::start_with_challenge(directory, CHALLENGE, "")
    }

    /// [`AcmeRig::start`] with `challenge` (`http-01`, `tls-alpn-01`) and the lines `extra`
    /// (e.g. `reuse_key = false\n`) in `[tls.acme]`.
    pub fn start_with_challenge(directory: &Path, challenge: &str, extra: &str) -> AcmeRig {
        let ca = TestCa::create_for(&directory.join("ca"), &[ACME_NAME]).expect("test CA");
        write_secrets(directory);
        let acme = format!(
            "[tls.acme]\ndirectory = \"https://{ACME_NAME}:{ACME_PORT}/dir\"\nname = \"{HOST}\"\nca_certificate = \"{}\"\n\
             contact = \"postmaster@example.org\"\nagree_terms = true\nchallenge = \"{challenge}\"\n{extra}",
            ca.ca_certificate.display()
        );
        let configuration = provider_configuration(&ca.ca_certificate, &["alice@example.org"], "") + &acme;
        std::fs::write(directory.join("homemx.toml"), configuration).unwrap();

        let network = IsolatedNetwork::create(directory).expect("isolated network");
        let namespace = network.namespace().to_string();
        let ns = Some(namespace.as_str());
        add_wan_address(&namespace, ACME_SERVER).unwrap();
        // Every connection the namespace opens to the appliance without choosing its source
        // (Pebble's validation) comes from the WAN client's address: a peer outside the LAN.
        let route = Command::new("ip")
            .args(["-n", &namespace, "route", "replace", &format!("{APPLIANCE}/32"), "dev", "br0", "src", &WAN_CLIENT.to_string()])
            .output()
            .unwrap();
        assert!(route.status.success(), "{}", String::from_utf8_lossy(&route.stderr));
        let zone_file = directory.join("zone.json");
        let zone = json!({"ttl": 60, "names": {ACME_NAME: {"A": [ACME_SERVER.to_string()]}, HOST: {"A": [APPLIANCE.to_string()]}}});
        write_json_atomically(&zone_file, &zone).unwrap();
        let dns = DnsServer::start(ns, &[&format!("{ROUTER}:53")], &zone_file, &directory.join("dns")).expect("DNS server");
        let sntp_config = SntpConfig { offset_seconds: 5.0, ..SntpConfig::new(format!("{ROUTER}:123")) };
        let sntp = SntpServer::start(ns, &sntp_config, &directory.join("sntp")).expect("SNTP server");
        AcmeRig { sntp, dns, ca, network }
    }

    /// The network namespace's name.
    pub fn namespace(&self) -> &str {
        self.network.namespace()
    }
}

/// `curl` inside the namespace from `source`: (status, body).
pub fn curl(namespace: &str, source: Ipv4Addr, arguments: &[&str]) -> (u16, String) {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "curl", "-s", "--max-time", "20", "--interface", &source.to_string(), "-w", "\n%{http_code}"])
        .args(arguments)
        .stdin(Stdio::null())
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// `openssl s_client -starttls smtp` to port 25 from inside the namespace, the name [`HOST`]
/// checked, verified with `ca_file` only (`-verify_return_error`: no handshake otherwise).
fn s_client(namespace: &str, ca_file: &Path, brief: bool) -> Output {
    Command::new("ip")
        .args(["netns", "exec", namespace, "timeout", "30", "openssl", "s_client"])
        .args(if brief { &["-brief"][..] } else { &[][..] })
        .args(["-starttls", "smtp", "-connect", &format!("{APPLIANCE}:25"), "-verify_hostname", HOST, "-verify_return_error", "-CAfile"])
        .arg(ca_file)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs")
}

/// What `openssl s_client -brief` says of port 25's chain after STARTTLS, verified with
/// `ca_file` only (`Verification: OK` when it verified).
pub fn port_25_chain(namespace: &str, ca_file: &Path) -> String {
    let output = s_client(namespace, ca_file, true);
    String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout)
}

/// One STARTTLS handshake with port 25: `Ok(SHA-256 fingerprint of the leaf)` when the chain
/// verified with `ca_file` as the only anchor and the name [`HOST`], else `Err(what openssl said)`.
pub fn port_25_leaf(namespace: &str, ca_file: &Path) -> Result<String, String> {
    let output = s_client(namespace, ca_file, false);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let said = || format!("{}{}", String::from_utf8_lossy(&output.stderr), stdout);
    if !stdout.contains("Verify return code: 0 (ok)") {
        return Err(said());
    }
    let start = stdout.find("-----BEGIN CERTIFICATE-----").ok_or_else(said)?;
    let end = stdout.find("-----END CERTIFICATE-----").ok_or_else(said)? + "-----END CERTIFICATE-----".len();
    let mut fingerprint = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    std::io::Write::write_all(&mut fingerprint.stdin.take().unwrap(), &stdout.as_bytes()[start..end]).unwrap();
    let fingerprint = fingerprint.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&fingerprint.stdout);
    text.trim().split_once('=').map(|(_, value)| value.to_string()).ok_or_else(said)
}
