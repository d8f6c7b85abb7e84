//! The DynDNS tests' world in one start: the isolated network, the configuration with the test
//! provider's `[dyndns]` section, and the providers in the namespace (the DNS server serving the
//! test's zone file, SNTP, and the DynDNS and check-IP endpoints over HTTPS, the check-IP
//! service answering `public_address`).
//!
//! Owns: nothing beyond the processes and network it starts (ended when it is dropped).
//! Calls: `network`, `owner`, `provider`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::network::{IsolatedNetwork, ROUTER};
use crate::owner::{dyndns_section, provider_configuration, write_secrets, CHECKIP_SERVER, DYNDNS_PASSWORD, DYNDNS_SERVER, DYNDNS_USER};
use crate::provider::{
    add_wan_address, write_json_atomically, DnsServer, HttpsConfig, HttpsEndpoints, SntpConfig, SntpServer, TestCa, CHECKIP_NAME, DYNDNS_NAME,
};

/// The started world. Fields drop in this order: the peers, then the network.
pub struct DynDnsRig {
    /// The DynDNS and check-IP endpoints (their requests, their control file).
    pub endpoints: HttpsEndpoints,
    /// The SNTP server.
    pub sntp: SntpServer,
    /// The DNS server (its queries).
    pub dns: DnsServer,
    /// The zone file the DNS server serves (rewrite it with `write_json_atomically`).
    pub zone_file: PathBuf,
    /// The isolated network.
    pub network: IsolatedNetwork,
}

impl DynDnsRig {
    /// Writes `homemx.toml` and the secrets in `directory` (the users `alice@example.org`, the
    /// providers of `ca`, DynDNS checked every 60 s), creates the network and starts the
    /// providers with `zone`.
    pub fn start(directory: &Path, ca: &TestCa, zone: &Value, public_address: &str) -> DynDnsRig {
        write_secrets(directory);
        let mut text = provider_configuration(&ca.ca_certificate, &["alice@example.org"], "");
        text.push_str(&dyndns_section(&ca.ca_certificate, 60));
        std::fs::write(directory.join("homemx.toml"), text).unwrap();
        let network = IsolatedNetwork::create(directory).expect("isolated network");
        let namespace = network.namespace().to_string();
        let ns = Some(namespace.as_str());
        add_wan_address(&namespace, DYNDNS_SERVER).unwrap();
        add_wan_address(&namespace, CHECKIP_SERVER).unwrap();
        let zone_file = directory.join("zone.json");
        write_json_atomically(&zone_file, zone).unwrap();
        let dns = DnsServer::start(ns, &["192.168.77.1:53"], &zone_file, &directory.join("dns")).expect("DNS server");
        let sntp = SntpServer::start(ns, &SntpConfig::new(format!("{ROUTER}:123")), &directory.join("sntp")).expect("SNTP server");
        let config = HttpsConfig::new(&[&format!("{DYNDNS_SERVER}:443"), &format!("{CHECKIP_SERVER}:443")], ca.leaf(DYNDNS_NAME).unwrap())
            .with_certificate_for(ca.leaf(CHECKIP_NAME).unwrap())
            .with_dyndns_account(DYNDNS_USER, DYNDNS_PASSWORD)
            .with_zone(&zone_file);
        let endpoints = HttpsEndpoints::start(ns, &config, &directory.join("https")).expect("HTTPS endpoints");
        endpoints.set_control(&json!({"ip_body": public_address})).unwrap();
        DynDnsRig { endpoints, sntp, dns, zone_file, network }
    }
}
