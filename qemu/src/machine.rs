//! One QEMU `mps2-an386` machine running a homemx image: start, wait for readiness, reach
//! its serial console and monitor, kill it (SIGKILL, like a power cut) and clean up.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::log::{LogCapture, LogOutput};
use crate::qmp::QmpClient;
use crate::Result;

/// How the machine's LAN9118 is connected.
#[derive(Clone, Debug)]
pub enum NetworkMode {
    /// QEMU user networking with `restrict=on`: the guest reaches nothing outside; the host
    /// reaches the listed guest ports on 127.0.0.1 (host port, guest port).
    UserRestricted {
        /// TCP forwards from 127.0.0.1:host to the guest.
        forwards: Vec<(u16, u16)>,
    },
    /// A TAP device inside a network namespace the harness created.
    Tap {
        /// The namespace QEMU runs in.
        namespace: String,
        /// The TAP device's name inside it.
        device: String,
    },
}

/// What to start.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// The firmware ELF.
    pub elf: PathBuf,
    /// The flash file (see [`crate::flash_image`]).
    pub flash_file: PathBuf,
    /// The network.
    pub network: NetworkMode,
    /// The NIC's MAC address.
    pub mac_address: String,
    /// Deterministic instruction counting (`-icount shift=0,sleep=off`) for benchmarks.
    pub instruction_counting: bool,
    /// Instructions per firmware operation, counted by the TCG plugin (no `-icount`: time
    /// is not disturbed) into the run directory; read them with
    /// [`Machine::operation_counts_file`] and [`crate::instructions`].
    pub operation_counts: bool,
    /// Echo the decoded log on stderr (also enabled by `HOMEMX_SHOW_LOGS=1`).
    pub echo_log: bool,
    /// Fit the tamper loop: a PCA9552 expander at I²C `0x60` on the SBCon at `0x4002_A000`
    /// (QOM path [`TAMPER_LOOP_PATH`]), its pin 0 closed as it comes out of reset. On by
    /// default; [`Machine::set_tamper_loop`] opens and closes it.
    pub tamper_loop: bool,
}

/// QOM path of the tamper loop's expander (see [`MachineConfig::tamper_loop`]).
pub const TAMPER_LOOP_PATH: &str = "/machine/peripheral/tamper";

impl MachineConfig {
    /// A machine on the TAP of an isolated test network, with the MAC address the network's
    /// DHCP server reserves the appliance's address for.
    pub fn on_network(elf: PathBuf, flash_file: PathBuf, network: &crate::network::IsolatedNetwork) -> Self {
        MachineConfig {
            elf,
            flash_file,
            network: NetworkMode::Tap {
                namespace: network.namespace().to_string(),
                device: crate::network::TAP_DEVICE.to_string(),
            },
            mac_address: crate::network::APPLIANCE_MAC.to_string(),
            instruction_counting: false,
            operation_counts: false,
            echo_log: false,
            tamper_loop: true,
        }
    }

    /// A machine on QEMU user networking with `restrict=on` and no forwards: it reaches
    /// nothing and nothing reaches it (tests that only need the log, QMP and the flash).
    pub fn offline(elf: PathBuf, flash_file: PathBuf, mac_address: &str) -> Self {
        MachineConfig {
            elf,
            flash_file,
            network: NetworkMode::UserRestricted { forwards: vec![] },
            mac_address: mac_address.to_string(),
            instruction_counting: false,
            operation_counts: false,
            echo_log: false,
            tamper_loop: true,
        }
    }
}

/// A running machine; killed by PID when dropped.
pub struct Machine {
    child: Child,
    /// The decoded firmware log.
    pub log: LogCapture,
    run_directory: PathBuf,
    started: Instant,
}

static MACHINE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh private directory for one machine's sockets and files.
pub fn new_run_directory(label: &str) -> Result<PathBuf> {
    let number = MACHINE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let directory = crate::repository_root()
        .join("qemu/run")
        .join(format!("{label}-{}-{number}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory)?;
    Ok(directory)
}

impl Machine {
    /// Starts QEMU. Sockets and the log file go to `run_directory`.
    pub fn start(config: &MachineConfig, run_directory: &Path) -> Result<Self> {
        let qemu_arguments = qemu_arguments(config, run_directory)?;
        let mut command = match &config.network {
            NetworkMode::Tap { namespace, .. } => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace, "qemu-system-arm"]);
                command
            }
            NetworkMode::UserRestricted { .. } => Command::new("qemu-system-arm"),
        };
        command
            .args(&qemu_arguments)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(run_directory.join("qemu.stderr"))?);
        let mut child = command.spawn().map_err(|error| format!("cannot start qemu-system-arm: {error}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let echo = config.echo_log || std::env::var_os("HOMEMX_SHOW_LOGS").is_some();
        let output = LogOutput {
            echo,
            file: Some(run_directory.join("firmware.log")),
            prefix: format!("[{}] ", run_directory.file_name().unwrap_or_default().to_string_lossy()),
        };
        let log = match LogCapture::start(&config.elf, stdout, output) {
            Ok(log) => log,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(error);
            }
        };
        Ok(Machine { child, log, run_directory: run_directory.to_path_buf(), started: Instant::now() })
    }

    /// QEMU's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When QEMU was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// This machine's directory (sockets, `firmware.log`, `qemu.stderr`).
    pub fn run_directory(&self) -> &Path {
        &self.run_directory
    }

    /// Waits for the firmware's readiness line (network configured) and returns it.
    pub fn wait_ready(&self, from_line: usize, timeout: Duration) -> Result<String> {
        self.log.wait_for(from_line, "homemx ready", timeout)
    }

    /// A QMP session to QEMU's monitor.
    pub fn monitor(&self) -> Result<QmpClient> {
        QmpClient::connect(&self.run_directory.join("qmp.sock"), Duration::from_secs(10))
    }

    /// Opens (`true`) or closes the tamper loop from outside the guest, as a door contact
    /// would: QMP `qom-set` of the expander's pin 0 (`led0`: `on` reads 1 in its `INPUT0`
    /// register, the level of an open normally-closed loop; `off`, its reset state, reads 0).
    pub fn set_tamper_loop(&self, open: bool) -> Result<()> {
        let value = if open { "on" } else { "off" };
        self.monitor()?.execute("qom-set", serde_json::json!({ "path": TAMPER_LOOP_PATH, "property": "led0", "value": value }))?;
        Ok(())
    }

    /// The serial console (UART0) as a stream.
    pub fn serial_console(&self) -> Result<UnixStream> {
        let path = self.run_directory.join("serial.sock");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match UnixStream::connect(&path) {
                Ok(stream) => return Ok(stream),
                Err(error) if Instant::now() > deadline => return Err(format!("serial socket: {error}").into()),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The file the instruction-counting plugin writes (with
    /// [`MachineConfig::operation_counts`]; see [`crate::instructions`]).
    pub fn operation_counts_file(&self) -> PathBuf {
        self.run_directory.join(crate::instructions::COUNTS_FILE_NAME)
    }

    /// The gdbstub socket (see [`crate::gdb`]).
    pub fn gdb_socket(&self) -> PathBuf {
        self.run_directory.join("gdb.sock")
    }

    /// Cuts the power: SIGKILL to QEMU, then reaps it. Flash contents written so far stay in
    /// the flash file.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether QEMU is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kill();
    }
}

fn qemu_arguments(config: &MachineConfig, run_directory: &Path) -> Result<Vec<String>> {
    let socket = |name: &str| format!("unix:{},server=on,wait=off", run_directory.join(name).display());
    let mut arguments: Vec<String> = vec![
        "-machine".into(),
        "mps2-an386,memory-backend=psram".into(),
        "-object".into(),
        format!("memory-backend-file,id=psram,size=16M,mem-path={},share=on", config.flash_file.display()),
        "-kernel".into(),
        config.elf.display().to_string(),
        "-display".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-serial".into(),
        socket("serial.sock"),
        "-qmp".into(),
        socket("qmp.sock"),
        "-gdb".into(),
        socket("gdb.sock"),
        "-semihosting-config".into(),
        "enable=on,target=native".into(),
    ];
    if config.tamper_loop {
        arguments.extend(["-device".into(), "pca9552,bus=i2c,address=0x60,id=tamper".into()]);
    }
    if config.instruction_counting {
        // `sleep=off` makes idle time vanish (deterministic boots); with peers on the network
        // the guest's timers would then race ahead of them, so `HOMEMX_ICOUNT_SLEEP=on` lets
        // idle time follow the host's clock (instruction counts stay exact, times do not).
        let sleep = if std::env::var("HOMEMX_ICOUNT_SLEEP").is_ok_and(|value| value == "on") { "on" } else { "off" };
        arguments.extend(["-icount".into(), format!("shift=0,sleep={sleep}")]);
    }
    if config.operation_counts {
        let counts_file = run_directory.join(crate::instructions::COUNTS_FILE_NAME);
        arguments.extend(["-plugin".into(), crate::instructions::plugin_argument(&config.elf, &counts_file)?]);
    }
    let nic = match &config.network {
        NetworkMode::UserRestricted { forwards } => {
            let mut nic = String::from("user,model=lan9118,restrict=on");
            for (host_port, guest_port) in forwards {
                nic.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}"));
            }
            nic
        }
        NetworkMode::Tap { device, .. } => format!("tap,ifname={device},script=no,downscript=no,model=lan9118"),
    };
    arguments.extend(["-nic".into(), format!("{nic},mac={}", config.mac_address)]);
    Ok(arguments)
}
