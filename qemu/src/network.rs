//! An isolated test network: a network namespace the harness creates (and deletes), with a
//! bridge for the appliance's TAP device, its own LAN and WAN peer addresses, and dnsmasq as
//! the LAN's DHCP server. Nothing in it routes anywhere else.
//!
//! ```text
//!  namespace hmx<pid>x<n>
//!  ┌───────────────────────────────────────────────────────────────┐
//!  │ br0  192.168.77.1/24 (router, LAN mailbox host later)         │
//!  │      192.168.77.10/24 (a LAN client)                          │
//!  │  └── tap0 ── QEMU mps2-an386 LAN9118 ── appliance 192.168.77.2 │
//!  │ lo   203.0.113.10/32 (a WAN client: the appliance answers it   │
//!  │      through its default gateway, the router 192.168.77.1)     │
//!  └───────────────────────────────────────────────────────────────┘
//! ```
//!
//! Test code runs inside the namespace with [`IsolatedNetwork::run_inside`], which moves a
//! fresh thread into it (`setns`); sockets opened there belong to the namespace.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::Result;

/// The appliance's MAC address on the test network (the DHCP reservation's key).
pub const APPLIANCE_MAC: &str = "52:54:00:6d:78:02";
/// The appliance's address (reserved for its MAC in dnsmasq).
pub const APPLIANCE: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
/// The router: the LAN's gateway and DHCP server.
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
/// A LAN client.
pub const LAN_CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 10);
/// A WAN client (documentation range, exists only inside the namespace).
pub const WAN_CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The TAP device QEMU attaches to.
pub const TAP_DEVICE: &str = "tap0";

static NETWORK_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace with bridge, TAP, peer addresses and DHCP; removed on drop.
pub struct IsolatedNetwork {
    name: String,
    dhcp_server: Option<Child>,
    directory: PathBuf,
}

fn ip(arguments: &[&str]) -> Result<()> {
    let output = Command::new("ip").args(arguments).output().map_err(|error| format!("cannot run ip: {error}"))?;
    if !output.status.success() {
        return Err(format!("ip {}: {}", arguments.join(" "), String::from_utf8_lossy(&output.stderr).trim()).into());
    }
    Ok(())
}

impl IsolatedNetwork {
    /// Creates the namespace and its devices and starts dnsmasq. Needs root (CI runs as root).
    pub fn create(directory: &Path) -> Result<Self> {
        // SAFETY: geteuid has no preconditions.
        let user = unsafe { libc::geteuid() };
        if user != 0 {
            return Err(format!(
                "not root (effective user id {user}): the isolated test network needs root (network namespaces and TAP devices)"
            )
            .into());
        }
        let name = format!("hmx{}x{}", std::process::id(), NETWORK_COUNTER.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name])?;
        let mut network = IsolatedNetwork { name, dhcp_server: None, directory: directory.to_path_buf() };
        network.configure()?;
        network.start_dhcp_server()?;
        Ok(network)
    }

    fn configure(&self) -> Result<()> {
        let namespace = self.name.as_str();
        let inside = |arguments: &[&str]| -> Result<()> {
            let mut all = vec!["-n", namespace];
            all.extend_from_slice(arguments);
            ip(&all)
        };
        inside(&["link", "set", "lo", "up"])?;
        inside(&["link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0"])?;
        inside(&["addr", "add", &format!("{ROUTER}/24"), "dev", "br0"])?;
        inside(&["addr", "add", &format!("{LAN_CLIENT}/24"), "dev", "br0"])?;
        inside(&["link", "set", "br0", "up"])?;
        inside(&["tuntap", "add", "dev", TAP_DEVICE, "mode", "tap"])?;
        inside(&["link", "set", TAP_DEVICE, "master", "br0"])?;
        inside(&["link", "set", TAP_DEVICE, "up"])?;
        inside(&["addr", "add", &format!("{WAN_CLIENT}/32"), "dev", "lo"])?;
        Ok(())
    }

    fn start_dhcp_server(&mut self) -> Result<()> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts"])
            .args(["--port=0", "--interface=br0", "--bind-interfaces", "--log-dhcp"])
            .arg("--dhcp-range=192.168.77.100,192.168.77.150,255.255.255.0,1h")
            .arg(format!("--dhcp-host={APPLIANCE_MAC},{APPLIANCE}"))
            .arg(format!("--dhcp-option=option:router,{ROUTER}"))
            // The router also names the DNS server (as home routers do); a test that needs
            // DNS runs its own authoritative server there (dnsmasq itself serves no DNS).
            .arg(format!("--dhcp-option=option:dns-server,{ROUTER}"))
            .arg(format!("--dhcp-leasefile={}", self.directory.join("dnsmasq.leases").display()))
            .arg(format!("--log-facility={}", self.directory.join("dnsmasq.log").display()))
            .arg("--pid-file=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start dnsmasq (installed by host-tools/setup.sh): {error}"))?;
        self.dhcp_server = Some(child);
        Ok(())
    }

    /// The namespace's name.
    pub fn namespace(&self) -> &str {
        &self.name
    }

    /// Runs `work` on a thread that has entered the namespace; its sockets live there.
    pub fn run_inside<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        self.spawn_inside(work).join().map_err(|_| "the work inside the namespace panicked")?
    }

    /// Starts `work` on a thread that has entered the namespace and returns at once: sockets the
    /// thread creates live there, sockets it was given keep their own namespace.
    pub fn spawn_inside<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<Result<T>> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || -> Result<T> {
            let file = std::fs::File::open(&path)?;
            // SAFETY: setns on this thread only; the file descriptor is valid while `file` lives.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns into {path}: {}", std::io::Error::last_os_error()).into());
            }
            Ok(work())
        })
    }

    /// Adds a further client address on the namespace's loopback (like [`WAN_CLIENT`]: the
    /// appliance reaches it through the router), for tests that need a second WAN client.
    pub fn add_client_address(&self, address: Ipv4Addr) -> Result<()> {
        ip(&["-n", &self.name, "addr", "add", &format!("{address}/32"), "dev", "lo"])
    }

    /// Waits until the DHCP server has leased the appliance its address.
    pub fn wait_for_lease(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let leases = self.directory.join("dnsmasq.leases");
        loop {
            if std::fs::read_to_string(&leases).is_ok_and(|text| text.contains(&APPLIANCE.to_string())) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the appliance got no DHCP lease".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for IsolatedNetwork {
    fn drop(&mut self) {
        if let Some(mut child) = self.dhcp_server.take() {
            // SAFETY: signalling the dnsmasq we started, by its PID.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
        let _ = ip(&["netns", "del", &self.name]);
    }
}
