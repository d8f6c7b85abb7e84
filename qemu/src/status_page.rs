//! The appliance's status page as a LAN client sees it: `GET` from an address inside the
//! isolated network, `/status.json` parsed, the page's headline, and a headless Chromium
//! screenshot of `/` into `qemu/run/artifacts/` (the CI artifacts). Used by the status-page tests; calls only
//! [`crate::peers::http_get`] and the namespace's [`IsolatedNetwork::run_inside`].

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT};
use crate::peers::{http_get, HttpAnswer};

/// `GET path` with `Host: host` from `source` to the appliance's port 80.
pub fn get(network: &IsolatedNetwork, source: Ipv4Addr, host: &str, path: &str) -> HttpAnswer {
    let (host, path) = (host.to_string(), path.to_string());
    network
        .run_inside(move || http_get(source, SocketAddrV4::new(APPLIANCE, 80), &host, &path))
        .unwrap()
        .expect("the HTTP exchange completes")
}

/// The headline of a status page (the text of its `<h1>`), if it has one.
pub fn headline(html: &str) -> Option<&str> {
    let (_, rest) = html.split_once("<h1>")?;
    rest.split_once("</h1>").map(|(headline, _)| headline)
}

/// `/status.json` as the LAN client gets it.
pub fn status_json(network: &IsolatedNetwork) -> serde_json::Value {
    let answer = get(network, LAN_CLIENT, &APPLIANCE.to_string(), "/status.json");
    serde_json::from_str(&answer.body).unwrap_or_else(|error| panic!("/status.json is not JSON ({error}): {answer:?}"))
}

/// Renders `/` in headless Chromium inside the namespace into `qemu/run/artifacts/file_name`
/// (its profile in `scratch`); returns the screenshot's path.
pub fn screenshot(network: &IsolatedNetwork, scratch: &Path, file_name: &str) -> PathBuf {
    let artifacts = crate::repository_root().join("qemu/run/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join(file_name);
    let _ = std::fs::remove_file(&screenshot);
    let output = Command::new("ip")
        .args(["netns", "exec", network.namespace(), "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", scratch.join("chromium").display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .args(["--window-size=1100,1500", &format!("http://{APPLIANCE}/")])
        .output()
        .expect("chromium runs (installed by host-tools/setup.sh)");
    assert!(screenshot.exists(), "screenshot written: {}", String::from_utf8_lossy(&output.stderr));
    eprintln!("status page screenshot: {}", screenshot.display());
    screenshot
}
