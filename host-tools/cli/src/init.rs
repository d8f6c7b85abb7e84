//! `homemx init`: the first `homemx.toml`. Takes the answers from flags, asks on the terminal
//! for the ones missing (only when stdin is a terminal; an answer that fails its field's rule in
//! [`config_file`] is asked again with the reason), renders a commented file, checks it
//! with [`config_file`]'s own rules before writing anything, refuses to overwrite without
//! `--force`, and says which password files and trust anchors are still needed and how to get
//! them. Calls only [`config_file`] and the standard library; never touches a device.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use crate::config_file;
use crate::error::{CliError, ExitCode, Result};

/// Where `init` writes the smarthost's password (relative to the TOML file's folder).
pub const SMARTHOST_PASSWORD_FILE: &str = "secrets/smarthost.password";
/// Where `init` expects the smarthost's CA certificate (relative to the TOML file's folder).
pub const SMARTHOST_CA_FILE: &str = "certs/smarthost-ca.pem";

/// The answers as given on the command line (`None`: not given).
#[derive(Debug, Default, Clone)]
pub struct InitFlags {
    /// `--domain`.
    pub domain: Option<String>,
    /// `--recipient`, repeatable.
    pub recipients: Vec<String>,
    /// `--lan-prefix`.
    pub lan_prefix: Option<String>,
    /// `--mailbox-host`.
    pub mailbox_host: Option<String>,
    /// `--mailbox-protocol` (`lmtp` or `smtp`).
    pub mailbox_protocol: Option<String>,
    /// `--mailbox-port` (default 24 for LMTP, 25 for SMTP).
    pub mailbox_port: Option<u16>,
    /// `--smarthost HOST:PORT`.
    pub smarthost: Option<String>,
    /// `--no-smarthost`: an inbound-only MX.
    pub no_smarthost: bool,
    /// `--smarthost-user` (default: the first recipient).
    pub smarthost_user: Option<String>,
    /// `--smarthost-tls` (default: `implicit` on port 465, `starttls` otherwise).
    pub smarthost_tls: Option<String>,
}

/// The provider's smarthost, as `init` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmarthostAnswers {
    /// Host name (also the name its certificate must carry).
    pub host: String,
    /// Port.
    pub port: u16,
    /// `implicit` or `starttls`.
    pub tls: String,
    /// AUTH user name.
    pub user_name: String,
}

/// Every answer `init` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitAnswers {
    /// The one domain.
    pub domain: String,
    /// Its recipients.
    pub recipients: Vec<String>,
    /// The LAN prefix.
    pub lan_prefix: String,
    /// The LAN mailbox host's IPv4 address.
    pub mailbox_host: String,
    /// `lmtp` or `smtp`.
    pub mailbox_protocol: String,
    /// Its port.
    pub mailbox_port: u16,
    /// The smarthost; `None`: an inbound-only MX.
    pub smarthost: Option<SmarthostAnswers>,
}

fn usage(message: impl Into<String>, hint: impl Into<String>) -> CliError {
    CliError::new(ExitCode::Usage, message).hint(hint)
}

/// The default port of a mailbox protocol.
fn default_mailbox_port(protocol: &str) -> u16 {
    if protocol == "smtp" {
        25
    } else {
        24
    }
}

/// `HOST:PORT` split, or why it is not one.
fn split_host_port(text: &str) -> std::result::Result<(String, u16), String> {
    let (host, port) = text.rsplit_once(':').ok_or_else(|| format!("{text:?} is not HOST:PORT"))?;
    let port: u16 = port.parse().ok().filter(|port| *port > 0).ok_or_else(|| format!("{port:?} is not a port (1-65535)"))?;
    Ok((host.to_string(), port))
}

/// `HOST:PORT` of `--smarthost`.
fn parse_smarthost(text: &str) -> Result<(String, u16)> {
    let hint = "give the provider's submission server as HOST:PORT, e.g. --smarthost smtp.provider.example:465 (or --no-smarthost)";
    split_host_port(text).map_err(|reason| usage(format!("--smarthost: {reason}"), hint))
}

/// Completes the smarthost answers from `HOST:PORT` and the optional flags.
fn smarthost_answers(host: String, port: u16, flags: &InitFlags, recipients: &[String]) -> SmarthostAnswers {
    let tls = flags.smarthost_tls.clone().unwrap_or_else(|| if port == 465 { "implicit".into() } else { "starttls".into() });
    let user_name = flags.smarthost_user.clone().or_else(|| recipients.first().cloned()).unwrap_or_default();
    SmarthostAnswers { host, port, tls, user_name }
}

/// The answers from flags alone; an error names every required flag that is missing.
pub fn answers_from_flags(flags: &InitFlags) -> Result<InitAnswers> {
    let mut missing = Vec::new();
    if flags.domain.is_none() {
        missing.push("--domain");
    }
    if flags.recipients.is_empty() {
        missing.push("--recipient");
    }
    if flags.lan_prefix.is_none() {
        missing.push("--lan-prefix");
    }
    if flags.mailbox_host.is_none() {
        missing.push("--mailbox-host");
    }
    if flags.smarthost.is_none() && !flags.no_smarthost {
        missing.push("--smarthost HOST:PORT or --no-smarthost");
    }
    if !missing.is_empty() {
        return Err(usage(
            format!("init without a terminal needs {}", missing.join(", ")),
            "pass every answer as a flag (see `homemx init --help`), or run `homemx init` on a terminal to be asked; nothing was written",
        ));
    }
    let protocol = flags.mailbox_protocol.clone().unwrap_or_else(|| "lmtp".into());
    let smarthost = match &flags.smarthost {
        Some(text) => {
            let (host, port) = parse_smarthost(text)?;
            Some(smarthost_answers(host, port, flags, &flags.recipients))
        }
        None => None,
    };
    Ok(InitAnswers {
        domain: flags.domain.clone().unwrap_or_default(),
        recipients: flags.recipients.clone(),
        lan_prefix: flags.lan_prefix.clone().unwrap_or_default(),
        mailbox_host: flags.mailbox_host.clone().unwrap_or_default(),
        mailbox_port: flags.mailbox_port.unwrap_or_else(|| default_mailbox_port(&protocol)),
        mailbox_protocol: protocol,
        smarthost,
    })
}

/// Whether every required answer is a flag (then `init` asks nothing).
pub fn flags_complete(flags: &InitFlags) -> bool {
    flags.domain.is_some()
        && !flags.recipients.is_empty()
        && flags.lan_prefix.is_some()
        && flags.mailbox_host.is_some()
        && (flags.smarthost.is_some() || flags.no_smarthost)
}

/// How often one question is asked before `init` gives up on it.
pub const MAX_TRIES: usize = 5;

/// The questions at the terminal: each is asked until its answer passes the check (the
/// configuration file's own rule for that field), saying why an answer was not taken.
struct Questions<'a> {
    input: &'a mut dyn BufRead,
    output: &'a mut dyn Write,
}

impl Questions<'_> {
    /// Asks `text` (an empty line takes `default`) until `check` accepts the answer, at most
    /// [`MAX_TRIES`] times; each refusal prints the check's reason and asks again.
    fn ask<T>(&mut self, text: &str, default: Option<&str>, check: impl Fn(&str) -> Result<T>) -> Result<T> {
        for _ in 0..MAX_TRIES {
            match default {
                Some(default) => write!(self.output, "{text} [{default}]: "),
                None => write!(self.output, "{text}: "),
            }
            .and_then(|()| self.output.flush())
            .map_err(|error| CliError::new(ExitCode::Failure, format!("cannot write the question: {error}")))?;
            let mut line = String::new();
            let read = self
                .input
                .read_line(&mut line)
                .map_err(|error| CliError::new(ExitCode::Failure, format!("cannot read the answer: {error}")))?;
            if read == 0 {
                return Err(CliError::new(ExitCode::Aborted, "no answer (end of input); nothing was written"));
            }
            let answer = match (line.trim(), default) {
                ("", Some(default)) => default,
                ("", None) => {
                    self.say("an answer is needed");
                    continue;
                }
                (answer, _) => answer,
            };
            match check(answer) {
                Ok(value) => return Ok(value),
                Err(error) => self.say(&format!("not taken: {}", error.message)),
            }
        }
        Err(CliError::new(ExitCode::Aborted, format!("no usable answer to {text:?} in {MAX_TRIES} tries; nothing was written"))
            .hint("the line after each answer says what was wrong with it"))
    }

    /// A line under the question (why the answer was not taken).
    fn say(&mut self, text: &str) {
        let _ = writeln!(self.output, "  {text}; please answer again");
    }
}

/// A check's refusal for an answer at the terminal (not a flag).
fn refused(field: &str, reason: impl std::fmt::Display) -> CliError {
    CliError::new(ExitCode::Configuration, format!("{field}: {reason}"))
}

/// Asks on `output` and reads lines from `input` for every answer not given as a flag; an
/// empty line takes the default shown in brackets. Each answer is checked at once with the
/// configuration file's rule for its field, and asked again with the reason when it fails.
pub fn ask(flags: &InitFlags, input: &mut dyn BufRead, output: &mut dyn Write) -> Result<InitAnswers> {
    let mut questions = Questions { input, output };
    let domain = match &flags.domain {
        Some(domain) => domain.clone(),
        None => questions.ask("Domain the appliance receives mail for (e.g. example.org)", None, |answer| {
            config_file::host_name("domain", answer).map(|_| answer.to_string())
        })?,
    };
    let recipients = if flags.recipients.is_empty() {
        let domains = [domain.to_ascii_lowercase()];
        let example = format!("alice@{domain}, bob@{domain}");
        questions.ask(&format!("Recipients, separated by commas ({example})"), None, |answer| {
            let recipients: Vec<String> = answer.split([',', ' ']).filter(|recipient| !recipient.is_empty()).map(str::to_string).collect();
            if recipients.is_empty() {
                return Err(refused("recipients", "at least one address is needed"));
            }
            for recipient in &recipients {
                config_file::recipient("recipient", recipient, &domains)?;
            }
            Ok(recipients)
        })?
    } else {
        flags.recipients.clone()
    };
    let lan_prefix = match &flags.lan_prefix {
        Some(prefix) => prefix.clone(),
        None => questions.ask("LAN network allowed to submit mail and see the status page", Some("192.168.1.0/24"), |answer| {
            config_file::lan_prefix("LAN network", answer).map(|_| answer.to_string())
        })?,
    };
    let mailbox_host = match &flags.mailbox_host {
        Some(host) => host.clone(),
        None => questions.ask("IPv4 address of the LAN mailbox host (e.g. Dovecot)", None, |answer| {
            config_file::ipv4("mailbox host", answer).map(|_| answer.to_string())
        })?,
    };
    let mailbox_protocol = match &flags.mailbox_protocol {
        Some(protocol) => protocol.clone(),
        None => questions.ask("Its protocol: lmtp or smtp", Some("lmtp"), |answer| {
            config_file::delivery_protocol("protocol", answer).map(|_| answer.to_string())
        })?,
    };
    let mailbox_port = match flags.mailbox_port {
        Some(port) => port,
        None => {
            let default = default_mailbox_port(&mailbox_protocol).to_string();
            questions.ask("Its port", Some(&default), |answer| {
                let port = answer.parse().map_err(|_| refused("port", format!("{answer:?} is not a port (1-65535)")))?;
                config_file::port("port", port)
            })?
        }
    };
    let smarthost = if flags.no_smarthost {
        None
    } else {
        let host_and_port = match &flags.smarthost {
            Some(text) => Some(parse_smarthost(text)?),
            None => {
                let question = "Provider's smarthost as HOST:PORT for outbound mail, or `none` for an inbound-only MX";
                questions.ask(question, None, |answer| {
                    if answer.eq_ignore_ascii_case("none") {
                        return Ok(None);
                    }
                    let (host, port) = split_host_port(answer).map_err(|reason| refused("smarthost", reason))?;
                    config_file::host_name("smarthost", &host)?;
                    Ok(Some((host, port)))
                })?
            }
        };
        match host_and_port {
            None => None,
            Some((host, port)) => {
                let mut answers = smarthost_answers(host, port, flags, &recipients);
                if flags.smarthost_user.is_none() {
                    answers.user_name = questions.ask("Smarthost AUTH user name", Some(&answers.user_name), |answer| {
                        config_file::user_name("user name", answer).map(|_| answer.to_string())
                    })?;
                }
                if flags.smarthost_tls.is_none() {
                    answers.tls = questions.ask("Smarthost TLS: implicit (465) or starttls (587)", Some(&answers.tls), |answer| {
                        config_file::tls("TLS", answer).map(|_| answer.to_string())
                    })?;
                }
                Some(answers)
            }
        }
    };
    Ok(InitAnswers { domain, recipients, lan_prefix, mailbox_host, mailbox_protocol, mailbox_port, smarthost })
}

/// A TOML basic string.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// The commented `homemx.toml` for `answers`.
pub fn render(answers: &InitAnswers) -> String {
    let recipients: Vec<String> = answers.recipients.iter().map(|recipient| quoted(recipient)).collect();
    let mut text = format!(
        r#"# homemx.toml, written by `homemx init`: the appliance configuration, as
# `homemx provision --config FILE` and `homemx config set --config FILE` read it.
# Relative paths are taken from this file's folder. Secrets never live in this file:
# passwords are read from the `password_file`s (first line). Every field is documented in
# host-tools/cli/homemx.example.toml (also [backup_mx], [dyndns], [limits], [status_page],
# and [tls.acme]: a publicly trusted certificate the device obtains and renews itself).

# Domains the appliance accepts mail for. postmaster@ and abuse@ exist for each of them.
domains = [{domain}]

# Recipients accepted; any other address is refused at RCPT time with 550 (no backscatter).
recipients = [{recipients}]

# LAN networks (IPv4 a.b.c.d/len, at least /8) allowed to submit mail and to see the status page.
lan_prefixes = [{prefix}]

# Sending to other domains needs a user who logs in (SMTP AUTH on 587 or 465, inside TLS):
# `homemx user add alice@example.org` adds a [[users]] entry at the end of this file and its
# password file, then updates the device. These are the defaults:
# submission_requires_auth = true
# lan_relay_without_auth = false   # true: LAN devices relay by address alone, without AUTH
#                                  # (weaker: a compromised LAN device then sends as anyone)

# Where accepted mail is delivered: the home mail server on the LAN.
[lan_mailbox]
address = {address}
port = {port}
protocol = {protocol}
"#,
        domain = quoted(&answers.domain),
        recipients = recipients.join(", "),
        prefix = quoted(&answers.lan_prefix),
        address = quoted(&answers.mailbox_host),
        port = answers.mailbox_port,
        protocol = quoted(&answers.mailbox_protocol),
    );
    match &answers.smarthost {
        Some(smarthost) => text.push_str(&format!(
            r#"
# The provider's smarthost: all outbound mail goes through it, always over verified TLS.
[smarthost]
host = {host}
port = {port}
tls = {tls}   # "implicit" (465) or "starttls" (587)
user_name = {user}
password_file = {password}   # first line: the AUTH password (mode 0600)
# Exactly one trust anchor:
ca_certificate = {ca}   # the CA (PEM) that signed the server's certificate
# pin_certificate = "certs/smarthost.pem"   # or: pin this server certificate's public key
# spki_sha256 = "…"                         # or: the pin itself, 64 hex digits
"#,
            host = quoted(&smarthost.host),
            port = smarthost.port,
            tls = quoted(&smarthost.tls),
            user = quoted(&smarthost.user_name),
            password = quoted(SMARTHOST_PASSWORD_FILE),
            ca = quoted(SMARTHOST_CA_FILE),
        )),
        None => text.push_str(
            r#"
# No [smarthost]: an inbound-only MX. LAN clients' mail to other domains is refused with
# `550 5.7.1 outbound mail is not configured`. To send mail out later, add a [smarthost]
# section (see host-tools/cli/homemx.example.toml) and run `homemx config set`.
"#,
        ),
    }
    text
}

/// The flag an answer came from, for errors about a field of the rendered file.
fn flag_of(field: &str) -> (&'static str, &'static str) {
    let table: [(&str, &str, &str); 9] = [
        ("domains", "--domain", "a domain name such as example.org"),
        ("recipients", "--recipient", "addresses in the --domain, e.g. --recipient alice@example.org"),
        ("lan_prefixes", "--lan-prefix", "the LAN as a.b.c.d/len, at least /8, e.g. --lan-prefix 192.168.1.0/24"),
        ("lan_mailbox.address", "--mailbox-host", "the mailbox host's IPv4 address, e.g. --mailbox-host 192.168.1.10"),
        ("lan_mailbox.protocol", "--mailbox-protocol", "lmtp or smtp"),
        ("lan_mailbox.port", "--mailbox-port", "a port 1-65535 (24 for LMTP, 25 for SMTP)"),
        ("smarthost.tls", "--smarthost-tls", "implicit (port 465) or starttls (port 587)"),
        ("smarthost.user_name", "--smarthost-user", "the smarthost's AUTH user name (at most 64 bytes)"),
        ("smarthost", "--smarthost", "HOST:PORT with a host name, e.g. smtp.provider.example:465, or --no-smarthost"),
    ];
    table
        .iter()
        .find(|(prefix, _, _)| field.starts_with(prefix))
        .map(|(_, flag, advice)| (*flag, *advice))
        .unwrap_or(("an answer", "see `homemx init --help`"))
}

/// Renders `answers` and checks the text with the provisioning rules; the text, or an error
/// that names the flag and what to give instead.
pub fn checked_text(answers: &InitAnswers) -> Result<String> {
    let text = render(answers);
    let parsed = config_file::parse(&text).and_then(|file| config_file::check_fields(&file).map(|()| file));
    match parsed {
        Ok(_) => Ok(text),
        Err(error) => {
            let (flag, advice) = flag_of(&error.message);
            Err(CliError::new(ExitCode::Configuration, format!("{flag}: {}", error.message))
                .hint(format!("give {advice}; nothing was written")))
        }
    }
}

/// A file the configuration names that must exist before `homemx provision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeededFile {
    /// Its path (the TOML file's folder joined with the relative name in the file).
    pub path: PathBuf,
    /// What it holds and how to get it.
    pub how: String,
}

/// The password files and trust anchors `answers` names, with how to get each.
pub fn needed_files(answers: &InitAnswers, folder: &Path) -> Vec<NeededFile> {
    let Some(smarthost) = &answers.smarthost else { return Vec::new() };
    let password = folder.join(SMARTHOST_PASSWORD_FILE);
    let ca = folder.join(SMARTHOST_CA_FILE);
    let starttls = if smarthost.tls == "starttls" { " -starttls smtp" } else { "" };
    vec![
        NeededFile {
            how: format!(
                "the smarthost's AUTH password for {user}, on the first line, readable only by you:\n      \
                 mkdir -p -m 700 {dir} && (umask 077 && read -rs -p 'password: ' p && printf '%s\\n' \"$p\" > {path})",
                user = smarthost.user_name,
                dir = password.parent().unwrap_or(folder).display(),
                path = password.display(),
            ),
            path: password,
        },
        NeededFile {
            how: format!(
                "the CA certificate (PEM) that signed {host}'s certificate. See the chain the server sends:\n      \
                 openssl s_client -connect {host}:{port} -servername {host}{starttls} -showcerts </dev/null\n      \
                 and save the last -----BEGIN CERTIFICATE----- block (the issuing CA) as {path}; better, take the CA\n      \
                 from the provider's documentation and compare. Or pin the server's key instead: save the first block as\n      \
                 certs/smarthost.pem and replace `ca_certificate` with `pin_certificate = \"certs/smarthost.pem\"` (the\n      \
                 pin breaks when the provider changes its key)",
                host = smarthost.host,
                port = smarthost.port,
                path = ca.display(),
            ),
            path: ca,
        },
    ]
}

/// `homemx init`: answers from flags (asked on the terminal when some are missing and stdin is
/// one), checked, written to `out` (never over an existing file without `force`); the files
/// still needed, for the caller to print.
pub fn init(flags: &InitFlags, out: &Path, force: bool) -> Result<(InitAnswers, Vec<NeededFile>)> {
    if out.exists() && !force {
        return Err(CliError::new(ExitCode::Refused, format!("{} exists; nothing was written", out.display()))
            .hint("pass --force to overwrite it, or --out another path"));
    }
    let answers = if flags_complete(flags) || !std::io::stdin().is_terminal() {
        answers_from_flags(flags)?
    } else {
        ask(flags, &mut std::io::stdin().lock(), &mut std::io::stderr())?
    };
    let text = checked_text(&answers)?;
    if let Some(parent) = out.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|error| CliError::new(ExitCode::Failure, format!("cannot create {}: {error}", parent.display())))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(out).map_err(|error| {
        CliError::new(ExitCode::Failure, format!("cannot write {}: {error}", out.display()))
            .hint("pass --force to overwrite an existing file")
    })?;
    file.write_all(text.as_bytes())
        .map_err(|error| CliError::new(ExitCode::Failure, format!("cannot write {}: {error}", out.display())))?;
    let folder = out.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let needed = needed_files(&answers, folder);
    Ok((answers, needed))
}
