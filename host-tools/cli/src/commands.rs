//! The subcommands: each opens the console, sends signed commands, and prints the result.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use homemx_wire::client::AdminSigningKey;
use homemx_wire::config::ConfigItem;
use homemx_wire::message::{
    Command as Wire, DeviceState, Response, TrustAnchor, TrustAnchorUpdate, MAX_CERTIFICATE_CHUNK,
};
use homemx_wire::secret::Secret;
use zeroize::Zeroizing;

use crate::config_file::{self, AnchorValue, Plan};
use crate::console::{unexpected, Console};
use crate::error::{CliError, ExitCode, Result};
use crate::init::InitFlags;
use crate::users::{self, PasswordSource};
use crate::{keyfile, passphrase, progress, tls, AlertAction, Cli, Command, ConfigAction, TlsAction, UserAction, UserTarget};

/// Runs the parsed command line.
pub fn execute(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Init {
            domain,
            recipients,
            lan_prefix,
            mailbox_host,
            mailbox_protocol,
            mailbox_port,
            smarthost,
            no_smarthost,
            smarthost_user,
            smarthost_tls,
            out,
            force,
        } => {
            let flags = InitFlags {
                domain: domain.clone(),
                recipients: recipients.clone(),
                lan_prefix: lan_prefix.clone(),
                mailbox_host: mailbox_host.clone(),
                mailbox_protocol: mailbox_protocol.clone(),
                mailbox_port: *mailbox_port,
                smarthost: smarthost.clone(),
                no_smarthost: *no_smarthost,
                smarthost_user: smarthost_user.clone(),
                smarthost_tls: smarthost_tls.clone(),
            };
            init(cli, &flags, out, *force)
        }
        Command::Keygen { out, no_passphrase, force } => keygen(cli, out.as_deref().unwrap_or(&cli.key), *no_passphrase, *force),
        Command::Provision { config, passphrase_file, weak_passphrase } => {
            provision(cli, config, passphrase_file.as_deref(), *weak_passphrase)
        }
        Command::Unlock { passphrase_file } => unlock(cli, passphrase_file.as_deref()),
        Command::Lock => simple(cli, &Wire::Lock, "locked"),
        Command::Status => status(cli),
        Command::Config { action: ConfigAction::Get } => config_get(cli),
        Command::Config { action: ConfigAction::Set { config } } => config_set(cli, config),
        Command::Logs { start, limit } => logs(cli, *start, *limit),
        Command::RotateKey { new_key, new_key_passphrase_file } => rotate_key(cli, new_key, new_key_passphrase_file.as_deref()),
        Command::FactoryReset { yes } => factory_reset(cli, *yes),
        Command::FetchNow => simple(cli, &Wire::FetchNow, "fetch started"),
        Command::Flush => simple(cli, &Wire::FlushQueue, "every queued message is being tried now"),
        Command::DyndnsResume => simple(cli, &Wire::DynDnsResume, "DynDNS updates resume at the next check"),
        Command::Alert { action: AlertAction::Ack { kind } } => acknowledge_alert(cli, kind),
        Command::User { action } => user(cli, action),
        Command::Tls { action: TlsAction::Csr { out } } => tls_csr(cli, out.as_deref()),
        Command::Tls { action: TlsAction::Install { chain } } => tls_install(cli, chain),
        Command::Tls { action: TlsAction::Tlsa { issuer } } => tls_tlsa(cli, *issuer),
        Command::Tls { action: TlsAction::Renew } => simple(cli, &Wire::TlsRenew, "ACME run started: see `homemx logs` and `homemx status`"),
    }
}

/// The first line of `path`, as a secret.
pub fn secret_from_file(path: &Path, what: &str) -> Result<Secret> {
    let file = std::fs::File::open(path)
        .map_err(|error| CliError::new(ExitCode::Failure, format!("cannot read {what} file {}: {error}", path.display())))?;
    let mut line = Zeroizing::new(String::new());
    std::io::BufReader::new(file)
        .read_line(&mut line)
        .map_err(|error| CliError::new(ExitCode::Failure, format!("cannot read {}: {error}", path.display())))?;
    let trimmed = line.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(CliError::new(ExitCode::Failure, format!("{what} file {} is empty", path.display())));
    }
    Secret::new(trimmed.as_bytes())
        .ok_or_else(|| CliError::new(ExitCode::Failure, format!("{what} longer than {} bytes", homemx_wire::secret::MAX_SECRET_LENGTH)))
}

fn prompt(what: &str, confirm: bool) -> Result<Secret> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::new(ExitCode::Failure, format!("{what} needed but stdin is not a terminal"))
            .hint(format!("pass the {what} with the matching --…-file option")));
    }
    let first = Zeroizing::new(
        rpassword::prompt_password(format!("{what}: ")).map_err(|error| CliError::new(ExitCode::Failure, error.to_string()))?,
    );
    if confirm {
        let second = Zeroizing::new(
            rpassword::prompt_password(format!("{what} (again): "))
                .map_err(|error| CliError::new(ExitCode::Failure, error.to_string()))?,
        );
        if first != second {
            return Err(CliError::new(ExitCode::Aborted, format!("the two {what}s differ")));
        }
    }
    if first.is_empty() {
        return Err(CliError::new(ExitCode::Aborted, format!("empty {what}")));
    }
    Secret::new(first.as_bytes()).ok_or_else(|| CliError::new(ExitCode::Failure, format!("{what} too long")))
}

fn secret(file: Option<&Path>, what: &str, confirm: bool) -> Result<Secret> {
    match file {
        Some(path) => secret_from_file(path, what),
        None => prompt(what, confirm),
    }
}

fn load_key(path: &Path, passphrase_file: Option<&Path>) -> Result<AdminSigningKey> {
    if keyfile::is_sealed(path)? {
        let passphrase = secret(passphrase_file, "key passphrase", false)?;
        let spinner = progress::spinner("opening the admin key");
        let key = keyfile::load(path, Some(passphrase.expose()));
        spinner.finish_and_clear();
        key
    } else {
        keyfile::load(path, None)
    }
}

fn open(cli: &Cli, key: AdminSigningKey) -> Result<Console> {
    let address = cli.device.as_ref().ok_or_else(|| {
        CliError::new(ExitCode::Usage, "no device given")
            .hint("pass --device /dev/ttyACM0 (or unix:PATH, tcp:HOST:PORT) or set HOMEMX_DEVICE")
    })?;
    let timeout = Duration::from_secs(cli.timeout.max(1));
    let link = address.open(timeout)?;
    Console::open(link, key, timeout)
}

fn connect(cli: &Cli) -> Result<Console> {
    let key = load_key(&cli.key, cli.key_passphrase_file.as_deref())?;
    open(cli, key)
}

fn print(cli: &Cli, json: serde_json::Value, human: impl FnOnce() -> String) {
    if cli.json {
        println!("{json}");
    } else {
        println!("{}", human());
    }
}

fn identity(console: &Console) -> String {
    hex::encode(console.device.identity)
}

fn init(cli: &Cli, flags: &InitFlags, out: &Path, force: bool) -> Result<()> {
    let (answers, needed) = crate::init::init(flags, out, force)?;
    let files: Vec<_> = needed.iter().map(|file| serde_json::json!({"path": file.path, "how": file.how})).collect();
    let json = serde_json::json!({"config_file": out, "inbound_only": answers.smarthost.is_none(), "needed_files": files});
    print(cli, json, || {
        let mut text = format!("wrote {}", out.display());
        if answers.smarthost.is_none() {
            text.push_str(" (no [smarthost]: an inbound-only MX; LAN mail to other domains gets 550 5.7.1)");
        }
        if needed.is_empty() {
            text.push_str("\nNo password file or trust anchor is needed.");
        } else {
            text.push_str("\nStill needed before `homemx provision` (files named in it):");
            for file in &needed {
                text.push_str(&format!("\n  {}\n      {}", file.path.display(), file.how));
            }
        }
        text.push_str(&format!(
            "\nThen: homemx keygen && homemx --device /dev/ttyACM0 provision --config {}\n      \
             (it asks for the storage passphrase; keep the admin key and the passphrase safe)",
            out.display()
        ));
        text
    });
    Ok(())
}

fn keygen(cli: &Cli, out: &Path, no_passphrase: bool, force: bool) -> Result<()> {
    let passphrase = if no_passphrase {
        None
    } else {
        Some(secret(cli.key_passphrase_file.as_deref(), "key passphrase", true)?)
    };
    let spinner = progress::spinner("generating the admin key");
    let public_key = keyfile::generate(out, passphrase.as_ref().map(|secret| secret.expose()), force);
    spinner.finish_and_clear();
    let public_key = hex::encode(public_key?);
    print(
        cli,
        serde_json::json!({"key_file": out, "public_key": public_key, "protected": !no_passphrase}),
        || format!("admin key written to {} (mode 0600)\npublic key: {public_key}", out.display()),
    );
    Ok(())
}

fn unlock_with(console: &mut Console, passphrase: Secret) -> Result<()> {
    let spinner = progress::spinner("unlocking (the device derives its key slowly on purpose)");
    let result = console.expect_done(&Wire::Unlock { passphrase });
    spinner.finish_and_clear();
    result
}

/// The plan's warnings on stderr (never in `--json`'s stdout).
fn warn(plan: &Plan) {
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }
}

fn provision(cli: &Cli, config: &Path, passphrase_file: Option<&Path>, weak_passphrase: bool) -> Result<()> {
    let plan = config_file::load(config)?;
    warn(&plan);
    let mut console = connect(cli)?;
    let fresh = console.device.state == DeviceState::FactoryFresh;
    // A fresh device's first unlock sets the passphrase: it is read and checked before the
    // device is touched, so a refused passphrase leaves the device factory-fresh.
    let new_passphrase = if fresh {
        let passphrase = secret(passphrase_file, "storage passphrase", true)?;
        passphrase::check_new(&passphrase, weak_passphrase, &plan.context_words())?;
        Some(passphrase)
    } else {
        None
    };
    if fresh {
        let admin_key = console.public_key();
        console.expect_done(&Wire::Enrol { admin_key })?;
        if !cli.json {
            eprintln!("enrolled admin key {} on device {}", hex::encode(admin_key), identity(&console));
        }
    } else {
        // Already owned: prove it is ours before writing anything.
        console.expect(&Wire::Status).map_err(|error| match error.kind {
            ExitCode::Authentication => CliError::new(ExitCode::Authentication, "the device is enrolled with another admin key")
                .hint("use the key it was provisioned with, or factory-reset it first"),
            _ => error,
        })?;
    }
    if console.device.state != DeviceState::Unlocked {
        let passphrase = match new_passphrase {
            Some(passphrase) => passphrase,
            None => secret(passphrase_file, "storage passphrase", false)?,
        };
        unlock_with(&mut console, passphrase)?;
    }
    send_plan(&mut console, &plan)?;
    print(
        cli,
        serde_json::json!({
            "device": identity(&console), "enrolled": fresh, "configuration_items": plan.items.len(),
            "credentials": plan.credentials.len(), "trust_anchors": plan.anchors.len(),
        }),
        || {
            format!(
                "provisioned {}: {} configuration items, {} credentials, {} trust anchors",
                identity(&console),
                plan.items.len(),
                plan.credentials.len(),
                plan.anchors.len()
            )
        },
    );
    Ok(())
}

fn anchor_commands(plan: &Plan) -> Vec<Wire> {
    let mut commands = Vec::new();
    for (service, value) in &plan.anchors {
        match value {
            AnchorValue::Pin(pin) => commands.push(Wire::SetTrustAnchor(TrustAnchorUpdate { service: *service, anchor: TrustAnchor::SpkiSha256(*pin) })),
            AnchorValue::Certificate(der) => {
                for (index, chunk) in der.chunks(MAX_CERTIFICATE_CHUNK).enumerate() {
                    commands.push(Wire::SetTrustAnchor(TrustAnchorUpdate {
                        service: *service,
                        anchor: TrustAnchor::CertificateChunk {
                            total_length: der.len() as u16,
                            offset: (index * MAX_CERTIFICATE_CHUNK) as u16,
                            bytes: heapless::Vec::from_slice(chunk).unwrap_or_default(),
                        },
                    }))
                }
            }
        }
    }
    commands
}

/// Sends a plan: the configuration as one transaction, then credentials and trust anchors.
pub fn send_plan(console: &mut Console, plan: &Plan) -> Result<()> {
    let anchors = anchor_commands(plan);
    let total = plan.items.len() + 2 + plan.credentials.len() + anchors.len();
    let bar = progress::bar(total as u64, "writing configuration");
    let result = (|| {
        console.expect_done(&Wire::ConfigBegin)?;
        bar.inc(1);
        for item in &plan.items {
            console.expect_done(&Wire::ConfigPut(item.clone()))?;
            bar.inc(1);
        }
        console.expect_done(&Wire::ConfigCommit { item_count: plan.items.len() as u16 })?;
        bar.inc(1);
        for (credential, secret) in &plan.credentials {
            console.expect_done(&Wire::SetCredential { credential: *credential, secret: secret.clone() })?;
            bar.inc(1);
        }
        for command in &anchors {
            console.expect_done(command)?;
            bar.inc(1);
        }
        Ok(())
    })();
    bar.finish_and_clear();
    result
}

fn unlock(cli: &Cli, passphrase_file: Option<&Path>) -> Result<()> {
    let mut console = connect(cli)?;
    match console.device.state {
        DeviceState::FactoryFresh => {
            return Err(CliError::new(ExitCode::Authentication, "the device is factory-fresh").hint("run `homemx provision` first"))
        }
        DeviceState::Unlocked => {
            print(cli, serde_json::json!({"state": "unlocked", "changed": false}), || "already unlocked".into());
            return Ok(());
        }
        DeviceState::Locked => {}
    }
    let passphrase = secret(passphrase_file, "storage passphrase", false)?;
    unlock_with(&mut console, passphrase)?;
    print(cli, serde_json::json!({"state": "unlocked", "changed": true}), || "unlocked".into());
    Ok(())
}

fn simple(cli: &Cli, command: &Wire, done: &str) -> Result<()> {
    let mut console = connect(cli)?;
    console.expect_done(command)?;
    print(cli, serde_json::json!({"command": command.name(), "result": "done"}), || done.to_string());
    Ok(())
}

fn status(cli: &Cli) -> Result<()> {
    let mut console = connect(cli)?;
    let Response::Status(status) = console.expect(&Wire::Status)? else {
        return Err(CliError::new(ExitCode::Protocol, "unexpected answer to status"));
    };
    let certificate = tls::certificate(&mut console)?;
    let json = serde_json::json!({
        "device": identity(&console),
        "firmware": console.device.firmware_version.as_str(),
        "board": console.device.board.as_str(),
        "status": status,
        "certificate": tls::certificate_json(certificate.as_ref()),
    });
    print(cli, json, || {
        let mut text = status_text(&identity(&console), &console.device.firmware_version, &console.device.board, &status);
        text.push('\n');
        text.push_str(&tls::certificate_text(certificate.as_ref()));
        text
    });
    Ok(())
}

fn tls_csr(cli: &Cli, out: Option<&Path>) -> Result<()> {
    let mut console = connect(cli)?;
    let pem = tls::request_pem(&tls::certificate_request(&mut console)?);
    match out {
        Some(path) => {
            std::fs::write(path, &pem)
                .map_err(|error| CliError::new(ExitCode::Failure, format!("cannot write {}: {error}", path.display())))?;
            print(cli, serde_json::json!({"command": "tls-csr", "out": path}), || {
                format!("certificate request written to {}; have a CA sign it, then `homemx tls install CHAIN.pem`", path.display())
            });
        }
        None if cli.json => println!("{}", serde_json::json!({"command": "tls-csr", "pem": pem})),
        None => print!("{pem}"),
    }
    Ok(())
}

fn tls_tlsa(cli: &Cli, issuer: bool) -> Result<()> {
    let mut console = connect(cli)?;
    let certificate = tls::certificate(&mut console)?;
    let (usage, digest, line) = tls::tlsa_record(certificate.as_ref(), issuer)?;
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    print(cli, serde_json::json!({"command": "tls-tlsa", "record": line, "usage": usage, "selector": 1, "matching_type": 1, "data": hex}), || line.clone());
    Ok(())
}

fn tls_install(cli: &Cli, chain: &Path) -> Result<()> {
    let mut console = connect(cli)?;
    tls::install(&mut console, chain)?;
    let certificate = tls::certificate(&mut console)?;
    print(cli, serde_json::json!({"command": "tls-install", "result": "done", "certificate": certificate}), || {
        format!("chain installed\n{}", tls::certificate_text(certificate.as_ref()))
    });
    Ok(())
}

/// The human form of a status: what the status page shows, alerts with their advice.
pub fn status_text(device: &str, firmware: &str, board: &str, status: &homemx_wire::message::Status) -> String {
    let address = status
        .public_address
        .map(|octets| std::net::Ipv4Addr::from(octets).to_string())
        .unwrap_or_else(|| "unknown".into());
    let oldest = status.oldest_queued_age_seconds.map(|age| format!(", oldest {}", duration(age))).unwrap_or_default();
    let mut text = format!(
        "{}\ndevice       {device} ({firmware} on {board})\nstate        {:?}\nuptime       {}\nconfigured   {}\ncredentials  smarthost {}, backup MX {}, DynDNS {}\npublic IPv4  {}{}\nspool        {} messages, {} deferred{oldest}; {} of {} bytes free\nmail         {} received, {} delivered, {} bounced since boot\nfailed unlocks {} (retry after {} s)\n",
        status.headline,
        status.state,
        duration(status.uptime_seconds),
        status.configured,
        set(status.credentials.smarthost_password),
        set(status.credentials.backup_mx_password),
        set(status.credentials.dyndns_password),
        address,
        status.dyndns_host_name.as_ref().map(|name| format!(" ({name})")).unwrap_or_default(),
        status.spool_messages,
        status.deferred,
        status.spool_free_bytes,
        status.spool_total_bytes,
        status.received,
        status.delivered,
        status.bounced,
        status.failed_unlocks,
        status.unlock_retry_after_seconds,
    );
    if status.alerts.is_empty() {
        text.push_str("alerts       none");
    } else {
        text.push_str(&format!("alerts       {} active", status.alerts.len()));
        if status.alerts_dropped > 0 {
            text.push_str(&format!(" ({} older ones dropped: the board was full)", status.alerts_dropped));
        }
    }
    for alert in &status.alerts {
        let kind = homemx_status::AlertKind::from_name(alert.kind.as_str());
        let since = match alert.first_seen_unix {
            Some(unix) => format!("since {} ({} ago)", homemx_smtp::clock::Rfc5322Date(unix), duration(alert.first_seen_age_seconds)),
            None => format!("since {} ago", duration(alert.first_seen_age_seconds)),
        };
        text.push_str(&format!(
            "\n  {} {since}, {} time{}: {}",
            alert.kind,
            alert.count,
            if alert.count == 1 { "" } else { "s" },
            kind.map(|kind| kind.title()).unwrap_or("(unknown to this CLI)")
        ));
        if let Some(kind) = kind {
            text.push_str(&format!("\n    {}", kind.advice()));
        }
        text.push_str(if alert.needs_acknowledgement {
            "\n    ends when you acknowledge it"
        } else {
            "\n    ends by itself when the cause is gone"
        });
        if alert.needs_acknowledgement {
            text.push_str(&format!(": homemx alert ack {}", alert.kind));
        }
    }
    text
}

/// Seconds as "3 h 5 min", "42 s".
fn duration(seconds: u32) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        3600..86400 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {} h", seconds / 86400, seconds % 86400 / 3600),
    }
}

fn acknowledge_alert(cli: &Cli, kind: &str) -> Result<()> {
    let known = || homemx_status::AlertKind::ALL.iter().map(|kind| kind.name()).collect::<Vec<_>>().join(", ");
    let Some(alert) = homemx_status::AlertKind::from_name(kind) else {
        return Err(CliError::new(ExitCode::Usage, format!("no alert kind is called {kind:?}"))
            .hint(format!("use a kind as `homemx status` shows it: {}", known())));
    };
    if !alert.needs_acknowledgement() {
        return Err(CliError::new(ExitCode::Refused, format!("{kind} cannot be acknowledged: it ends by itself once its cause is gone"))
            .hint(alert.advice()));
    }
    let mut console = connect(cli)?;
    let command = Wire::AcknowledgeAlert { kind: heapless::String::try_from(kind).unwrap_or_default() };
    match console.call(&command)? {
        Response::Done => {}
        Response::Error(homemx_wire::message::ErrorCode::NotFound) => {
            return Err(CliError::new(ExitCode::Refused, format!("no {kind} alert is active")).hint("`homemx status` lists the active alerts"))
        }
        Response::Error(code) => return Err(CliError::refused("alert ack", code)),
        other => return Err(unexpected("alert ack", &other)),
    }
    print(cli, serde_json::json!({"command": command.name(), "kind": kind, "result": "done"}), || {
        format!("alert {kind} acknowledged; it is gone from the device and its record")
    });
    Ok(())
}

fn set(present: bool) -> &'static str {
    if present {
        "set"
    } else {
        "missing"
    }
}

fn config_get(cli: &Cli) -> Result<()> {
    let mut console = connect(cli)?;
    let mut items: Vec<ConfigItem> = Vec::new();
    let mut total = 1u16;
    let mut index = 0u16;
    while index < total {
        match console.call(&Wire::ConfigGet { index })? {
            Response::ConfigItem { total: count, item, .. } => {
                total = count;
                items.push(item);
            }
            Response::Error(homemx_wire::message::ErrorCode::NotFound) if index == 0 => break,
            Response::Error(code) => return Err(CliError::refused("config get", code)),
            other => return Err(unexpected("config get", &other)),
        }
        index += 1;
    }
    print(cli, serde_json::json!({ "items": items }), || {
        if items.is_empty() {
            return "no configuration yet".into();
        }
        items.iter().map(|item| format!("{item:?}")).collect::<Vec<_>>().join("\n")
    });
    Ok(())
}

fn config_set(cli: &Cli, config: &Path) -> Result<()> {
    let plan = config_file::load(config)?;
    warn(&plan);
    let mut console = connect(cli)?;
    send_plan(&mut console, &plan)?;
    print(cli, serde_json::json!({"configuration_items": plan.items.len()}), || {
        format!("configuration replaced ({} items)", plan.items.len())
    });
    Ok(())
}

fn logs(cli: &Cli, start: u32, limit: u32) -> Result<()> {
    let mut console = connect(cli)?;
    let mut entries = Vec::new();
    let mut next = start;
    loop {
        let Response::Logs(page) = console.expect(&Wire::Logs { start: next, max_entries: u8::MAX })? else {
            return Err(CliError::new(ExitCode::Protocol, "unexpected answer to logs"));
        };
        entries.extend(page.entries);
        next = page.next;
        if !page.more || entries.len() as u32 >= limit {
            break;
        }
    }
    entries.truncate(limit as usize);
    print(cli, serde_json::json!({ "entries": entries, "next": next }), || {
        entries
            .iter()
            .map(|entry| format!("{:>6} {:>8}s {:<7} {}", entry.sequence, entry.uptime_seconds, format!("{:?}", entry.level), entry.text))
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

fn rotate_key(cli: &Cli, new_key_path: &Path, new_key_passphrase_file: Option<&Path>) -> Result<()> {
    let new_key = load_key(new_key_path, new_key_passphrase_file)?;
    let mut console = connect(cli)?;
    let proof = console
        .client()
        .rotation_proof(&new_key)
        .map_err(|error| CliError::new(ExitCode::Protocol, error.describe()))?;
    let new_public = new_key.verifying_key().to_bytes();
    console.expect_done(&Wire::RotateAdminKey { new_key: new_public, proof })?;
    print(cli, serde_json::json!({"public_key": hex::encode(new_public)}), || {
        format!("admin key rotated; from now on use {}", new_key_path.display())
    });
    Ok(())
}

fn factory_reset(cli: &Cli, yes: bool) -> Result<()> {
    let mut console = connect(cli)?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::new(ExitCode::Aborted, "factory reset needs confirmation").hint("pass --yes to confirm non-interactively"));
        }
        eprint!(
            "This destroys the data key of device {}: its spool, configuration and credentials become unreadable.\nType `reset` to confirm: ",
            identity(&console)
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if answer.trim() != "reset" {
            return Err(CliError::new(ExitCode::Aborted, "not confirmed; nothing was changed"));
        }
    }
    let spinner = progress::spinner("factory reset");
    let result = console.expect_done(&Wire::FactoryReset);
    spinner.finish_and_clear();
    result?;
    print(cli, serde_json::json!({"device": identity(&console), "state": "factory-fresh"}), || {
        "device reset to factory-fresh; provision it again with `homemx provision`".into()
    });
    Ok(())
}

/// `homemx user …`: edit the configuration file (and password file), then push it whole.
fn user(cli: &Cli, action: &UserAction) -> Result<()> {
    let (verb, name, target): (&str, &str, &UserTarget) = match action {
        UserAction::Add { name, target, .. } => ("add", name, target),
        UserAction::Remove { name, target } => ("remove", name, target),
        UserAction::Passwd { name, target, .. } => ("passwd", name, target),
    };
    // Without a device and without --no-push nothing is changed: the owner meant both.
    if !target.no_push && cli.device.is_none() {
        return Err(CliError::new(ExitCode::Usage, "no device given")
            .hint("pass --device /dev/ttyACM0 (or unix:PATH, tcp:HOST:PORT) or set HOMEMX_DEVICE; or --no-push to only edit the files"));
    }
    // Before any password is typed: the file it would go into must be there.
    if !target.config.is_file() {
        return Err(CliError::new(ExitCode::Configuration, format!("no configuration file {}", target.config.display()))
            .hint("run it where homemx.toml is, or pass --config PATH (`homemx init` writes one)"));
    }
    let source = |file: &Option<std::path::PathBuf>, confirm: bool| -> Result<PasswordSource> {
        match file {
            Some(path) => Ok(PasswordSource::File(path.clone())),
            None => Ok(PasswordSource::Typed(prompt(&format!("password for {}", name.trim().to_ascii_lowercase()), confirm)?)),
        }
    };
    let outcome = match action {
        UserAction::Add { name, password_file, messages_per_hour, target } => {
            users::add(&target.config, name, source(password_file, true)?, *messages_per_hour)?
        }
        UserAction::Remove { name, target } => users::remove(&target.config, name)?,
        UserAction::Passwd { name, password_file, target } => users::passwd(&target.config, name, source(password_file, true)?)?,
    };
    for note in &outcome.notes {
        eprintln!("note: {note}");
    }
    let config = &target.config;
    let pushed = if target.no_push {
        false
    } else {
        let plan = config_file::load(config)?;
        let push = || -> Result<()> {
            let mut console = connect(cli)?;
            send_plan(&mut console, &plan)
        };
        push().map_err(|error| {
            let hint = format!(
                "{} is updated, the device still has the previous users: run `homemx config set --config {}` once it is reachable",
                config.display(),
                config.display()
            );
            CliError { hint: Some(error.hint.map_or(hint.clone(), |earlier| format!("{earlier}; {hint}"))), ..error }
        })?;
        true
    };
    let json = serde_json::json!({
        "command": format!("user {verb}"), "user": outcome.name, "password_file": outcome.password_file,
        "users": outcome.users, "config_file": config, "pushed": pushed,
    });
    print(cli, json, || {
        let done = match verb {
            "add" => format!("added {} (password file {})", outcome.name, outcome.password_file.display()),
            "remove" => format!("removed {}", outcome.name),
            _ => format!("new password for {} (in {})", outcome.name, outcome.password_file.display()),
        };
        let state = if pushed {
            "the device's configuration is replaced: it holds the password's salted hash, never the password".to_string()
        } else {
            format!("not sent (--no-push): run `homemx config set --config {}`", config.display())
        };
        format!("{done}; {} users in {}\n{state}", outcome.users, config.display())
    });
    Ok(())
}
