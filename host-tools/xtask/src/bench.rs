//! `cargo xtask bench`: what the appliance costs, measured, as one table printed and written to
//! `BENCHMARKS.md` (with the date, the commit and the machine's CPU), and checked against
//! `budgets.toml` with `--check`.
//!
//! Owns the report and its rendering; the measurements come from [`crate::image_map`] (flash
//! per crate, static RAM per owner), [`crate::figures::spool_figures`] (flash programmed per
//! message), [`homemx_qemu::operation_workload`] (instructions per operation, counted by the
//! QEMU TCG plugin while the appliance talks to real peers) and [`crate::throughput`] (messages
//! per second through the MX beside Postfix, and the appliance's RAM under that load).

use std::fmt::Write as _;

use homemx_qemu::firmware::{image_size, FirmwareBuild};
use homemx_qemu::instructions::{OperationCount, Spread};
use homemx_qemu::operation_workload::{measure_operations, MeasuredOperations};
use homemx_qemu::{repository_root, Result};

use homemx_qemu::budgets::{Budgets, Verdict};
use crate::image_map::{ImageMap, Region};

/// Rows shown of the per-crate and per-owner tables (the rest is summed into one row).
const TOP_ROWS: usize = 16;

/// What `bench` was asked to do.
struct Options {
    check: bool,
    messages: usize,
    repeats: usize,
    throughput: bool,
    operations: bool,
}

fn options(arguments: &[String]) -> Result<Options> {
    let mut options = Options { check: false, messages: 2_000, repeats: 10, throughput: true, operations: true };
    let mut arguments = arguments.iter();
    while let Some(argument) = arguments.next() {
        let mut number = |name: &str| -> Result<usize> {
            arguments.next().and_then(|value| value.parse().ok()).ok_or_else(|| format!("{name} needs a number").into())
        };
        match argument.as_str() {
            "--check" => options.check = true,
            "--messages" => options.messages = number("--messages")?.max(1),
            "--repeats" => options.repeats = number("--repeats")?.max(1),
            "--no-throughput" => options.throughput = false,
            "--no-operations" => options.operations = false,
            other => return Err(format!("unknown option {other:?}: {USAGE}").into()),
        }
    }
    Ok(options)
}

/// The command line of `bench`.
pub const USAGE: &str = "cargo xtask bench [--check] [--messages N] [--repeats N] [--no-throughput] [--no-operations]";

/// One measured operation: its instruction counts over the runs.
pub struct OperationRow {
    /// What was measured.
    pub name: String,
    /// Its budget's key in `budgets.toml`, if it has one.
    pub budget_key: Option<&'static str>,
    /// One count per run.
    pub samples: Vec<u64>,
}

impl OperationRow {
    /// The median of the samples (the lower middle one of an even number, as the
    /// `instruction_counts` test prints it: [`Spread::of`]).
    pub fn median(&self) -> u64 {
        Spread::of(&self.samples).map_or(0, |spread| spread.median)
    }

    /// (max − min) / median.
    pub fn spread(&self) -> f64 {
        Spread::of(&self.samples).map_or(0.0, |spread| spread.spread)
    }
}

/// Everything one `bench` run measured.
struct Report {
    sections: Vec<String>,
    verdicts: Vec<Verdict>,
}

impl Report {
    fn budget(&mut self, budgets: &Budgets, what: &str, key: &str, measured: f64) -> String {
        match budgets.verdict(what, key, measured) {
            Some(verdict) => {
                let mark = if verdict.within() { "within" } else { "**over**" };
                let text = format!("{} ({mark})", human(verdict.budget));
                self.verdicts.push(verdict);
                text
            }
            None => "–".into(),
        }
    }
}

/// A figure with thousands separators (`1,048,576`), or two decimals below 100.
fn human(value: f64) -> String {
    if value.fract() != 0.0 && value.abs() < 100.0 {
        return format!("{value:.2}");
    }
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 && digit != '-' {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn command_output(program: &str, arguments: &[&str]) -> String {
    std::process::Command::new(program)
        .args(arguments)
        .current_dir(repository_root())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|line| line.strip_prefix("model name")).map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string());
    let cores = cpuinfo.lines().filter(|line| line.starts_with("processor")).count();
    format!("{} ({cores} cores)", model.unwrap_or_else(|| "unknown CPU".into()))
}

fn header() -> String {
    let mut commit = command_output("git", &["rev-parse", "--short=12", "HEAD"]);
    if !command_output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        commit.push_str(" + uncommitted changes");
    }
    format!(
        "# homemx benchmarks\n\nGenerated by `cargo xtask bench` on {} at commit {commit}, on {}, {}.\nInstruction counts come from a QEMU TCG plugin (mps2-an386, Cortex-M4 instructions), not \
         from `-icount`: guest time follows the host, so the appliance talks to real peers. \
         Milliseconds are the counts at the real board's {} MHz, one instruction per cycle.\n",
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        cpu_model(),
        command_output("qemu-system-arm", &["--version"]).lines().next().unwrap_or("QEMU unknown"),
        Budgets::load().map(|budgets| budgets.clock_hz / 1e6).unwrap_or(250.0),
    )
}

fn table(rows: &[(String, u64)], total_label: &str) -> String {
    let mut text = String::from("| | bytes |\n| --- | ---: |\n");
    for (name, bytes) in rows.iter().take(TOP_ROWS) {
        let _ = writeln!(text, "| `{name}` | {} |", human(*bytes as f64));
    }
    if rows.len() > TOP_ROWS {
        let rest: u64 = rows[TOP_ROWS..].iter().map(|(_, bytes)| bytes).sum();
        let _ = writeln!(text, "| {} others | {} |", rows.len() - TOP_ROWS, human(rest as f64));
    }
    let total: u64 = rows.iter().map(|(_, bytes)| bytes).sum();
    let _ = writeln!(text, "| **{total_label}** | **{}** |", human(total as f64));
    text
}

fn image_section(report: &mut Report, budgets: &Budgets, elf: &std::path::Path) -> Result<ImageMap> {
    let size = image_size(elf)?;
    let map = ImageMap::read(elf)?;
    let flash_budget = report.budget(budgets, "flash image", "flash.image_bytes", size.flash as f64);
    let mut text = String::from("## Image\n\n");
    let _ = writeln!(text, "| | bytes | budget |\n| --- | ---: | --- |");
    let _ = writeln!(text, "| flash (vector table, code, constants, data's load image) | {} | {flash_budget} |", human(size.flash as f64));
    let _ = writeln!(text, "| static RAM (data, bss, uninit; the TLS heap's arena included) | {} | – |", human(size.static_ram as f64));
    let _ = writeln!(text, "\n### Flash per crate\n\n{}", table(&map.by_crate(Region::Flash), "flash sections"));
    let _ = writeln!(text, "### Static RAM per task and module\n\nEach embassy task's pool (its future, sized at build time) under the task's name; other statics under their module.\n\n{}", table(&map.ram_by_owner(), "RAM sections"));
    report.sections.push(text);
    Ok(map)
}

fn spool_section(report: &mut Report, budgets: &Budgets) -> Result<()> {
    let spool = crate::figures::spool_figures()?;
    let ratio_budget = report.budget(budgets, "spool: programmed per message", "spool.programmed_per_message", spool.programmed_ratio);
    let erase_budget = report.budget(budgets, "spool: erases before 250", "spool.erases_before_250", spool.most_erased_before_commit as f64);
    let mut text = String::from("## Spool (QEMU board's NOR flash, 10 KB messages)\n\n| | measured | budget |\n| --- | ---: | --- |\n");
    let _ = writeln!(text, "| bytes programmed per message / message bytes | {:.3} ({} B) | {ratio_budget} |", spool.programmed_ratio, human(spool.programmed_per_message as f64));
    let _ = writeln!(text, "| sectors erased between begin and commit (most of {} messages) | {} | {erase_budget} |", spool.commits, spool.most_erased_before_commit);
    let _ = writeln!(text, "| mount after a power cut ({}) | {} instructions | – |", spool.mount.0, human(spool.mount.1 as f64));
    report.sections.push(text);
    Ok(())
}

/// The rows of the operations table, in the order.
fn operation_rows(measured: &MeasuredOperations) -> Vec<OperationRow> {
    let row = |name: &str, budget_key: Option<&'static str>, runs: &[OperationCount]| OperationRow {
        name: name.into(),
        budget_key,
        samples: runs.iter().map(|run| run.instructions).collect(),
    };
    let handshake = Some("instructions.tls_client_handshake");
    vec![
        row("TLS client handshake: smarthost (STARTTLS, P-256, CA anchor)", handshake, &measured.smarthost_handshake),
        row("TLS client handshake: backup MX, POP3 (STARTTLS)", handshake, &measured.backup_mx_handshake),
        row("TLS client handshake: DynDNS and check-IP (HTTPS)", handshake, &measured.dyndns_handshake),
        row("10 KB message on the MX, plain: first byte to `250`", Some("instructions.mx_message_10k"), &measured.mx_message),
        row("TLS server handshake: STARTTLS on 25 (X25519, self-signed P-256)", Some("instructions.tls_server_handshake"), &measured.server_handshake),
        row("10 KB message on the MX inside TLS: handshake end to `250`", None, &measured.mx_message_tls),
        row("message delivered to the LAN mailbox host (LMTP, spool updated)", None, &measured.mailbox_delivery),
        row("10 KB message fetched by POP3 from the backup MX, committed", None, &measured.backup_mx_message),
        row("DynDNS check, no update (two check-IP fetches, DNS)", None, &measured.dyndns_check),
        row("DynDNS check, first after provisioning, with an update", None, &measured.first_dyndns_check),
        row("unlock (PBKDF2, spool mount)", Some("instructions.unlock"), &measured.unlock),
        row("boot to network ready (RAM wipe, bring-up, DHCP; before unlock)", Some("instructions.boot_to_ready"), &measured.boot_to_ready),
        row("same state: 10 KB message on the MX (one per boot, same flash image)", None, &measured.same_state.mx_message),
        row("same state: its delivery to the LAN mailbox host", None, &measured.same_state.mailbox_delivery),
        row("same state: unlock", None, &measured.same_state.unlock),
    ]
}

fn operations_section(report: &mut Report, budgets: &Budgets, rows: &[OperationRow], runs: usize) {
    let mut text = format!(
        "## Instructions per operation\n\nCounted by the QEMU TCG plugin between the firmware's marks, with real peers on the isolated network (`homemx_qemu::operation_workload`). \
         Each operation was done {runs} times where the workload can repeat it (the runs column says how many were counted); the figure is the median, the spread is (max − min) / median. \
         The long run's state grows from run to run (spool positions, key-value records, the event log), so its spreads include the work's; \
         the \"same state\" rows boot each run from one copy of the flash (provisioned, spool empty, locked) and show the instrument's own spread. \
        \n\n| operation | instructions | spread | ms at {:.0} MHz | budget |\n| --- | ---: | ---: | ---: | --- |\n",
        budgets.clock_hz / 1e6
    );
    for row in rows {
        let median = row.median();
        let budget = match row.budget_key {
            Some(key) => {
                let verdict = report.budget(budgets, &row.name, key, median as f64);
                let limit = budgets.get(key).map(|limit| format!(" = {:.0} ms", budgets.milliseconds(limit))).unwrap_or_default();
                format!("{verdict}{limit}")
            }
            None => "–".into(),
        };
        let _ = writeln!(
            text,
            "| {} | {} | {:.2} % ({} runs) | {:.2} | {budget} |",
            row.name,
            human(median as f64),
            row.spread() * 100.0,
            row.samples.len(),
            budgets.milliseconds(median as f64)
        );
    }
    report.sections.push(text);
}

fn memory_section(report: &mut Report, budgets: &Budgets, static_ram: u64, stack_high_water: u64, heap_in_use: u64) {
    let total = static_ram + 2 * stack_high_water;
    let budget = report.budget(budgets, "RAM: static + 2 × stack high-water", "ram.total_bytes", total as f64);
    let mut text = String::from("## RAM after the throughput load\n\n| | bytes | budget |\n| --- | ---: | --- |\n");
    let _ = writeln!(text, "| static RAM | {} | |", human(static_ram as f64));
    let stack_budget = report.budget(budgets, "stack high-water", "ram.stack_high_water_bytes", stack_high_water as f64);
    let _ = writeln!(text, "| stack high-water (painted at reset, read from `/health`) | {} | {stack_budget} |", human(stack_high_water as f64));
    let _ = writeln!(text, "| heap in use at the end (inside static RAM's arena; no high-water yet) | {} | |", human(heap_in_use as f64));
    let _ = writeln!(text, "| **static + 2 × stack high-water** | **{}** | {budget} |", human(total as f64));
    report.sections.push(text);
}

fn throughput_section(figures: &crate::throughput::ThroughputFigures) -> String {
    let (appliance, postfix) = (&figures.appliance, &figures.postfix);
    let mut text = format!(
        "## MX throughput beside Postfix\n\n{} messages of 10 KB, 4 senders (one WAN address each), one SMTP session per message, counted at \"250\" after the data (durable). \
         The appliance runs in QEMU on the host's clock (TCG), with its LAN mailbox host up; Postfix is Debian's, virtual(8) into a Maildir, in the same namespace.\n\n\
         | | messages/s | accepted | failed | temporary refusals (retried) | memory |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
        figures.messages
    );
    let _ = writeln!(
        text,
        "| appliance | {:.2} | {} | {} | {} | {} B static + {} B stack high-water |",
        figures.appliance_messages_per_second,
        appliance.load.accepted,
        appliance.load.failed,
        appliance.load.temporary_refusals,
        human(appliance.memory.static_ram_bytes as f64),
        human(appliance.memory.stack_high_water_bytes as f64)
    );
    let _ = writeln!(
        text,
        "| Postfix | {:.2} | {} | {} | {} | {} B PSS over {} processes (peak) |",
        figures.postfix_messages_per_second,
        postfix.load.accepted,
        postfix.load.failed,
        postfix.load.temporary_refusals,
        human(postfix.peak_memory.proportional_set_size as f64),
        postfix.peak_memory.processes
    );
    let _ = writeln!(text, "\nRatio appliance / Postfix: {:.3}.", figures.ratio);
    text
}

fn verdict_section(report: &Report) -> String {
    let over: Vec<&Verdict> = report.verdicts.iter().filter(|verdict| !verdict.within()).collect();
    if over.is_empty() {
        return format!("## Budgets\n\nAll {} checked figures are within their budgets.\n", report.verdicts.len());
    }
    let mut text = format!("## Budgets\n\n{} of {} checked figures are over budget:\n\n", over.len(), report.verdicts.len());
    for verdict in over {
        let _ = writeln!(text, "- {}: {} > {}", verdict.what, human(verdict.measured), human(verdict.budget));
    }
    text
}

/// `cargo xtask bench`.
pub fn bench(arguments: &[String]) -> Result<()> {
    let options = options(arguments)?;
    let budgets = Budgets::load()?;
    let mut report = Report { sections: Vec::new(), verdicts: Vec::new() };
    let elf = FirmwareBuild::QEMU.build()?;
    let static_ram = image_size(&elf)?.static_ram;
    if options.operations {
        let measured = measure_operations(options.repeats)?;
        operations_section(&mut report, &budgets, &operation_rows(&measured), options.repeats);
    }
    image_section(&mut report, &budgets, &elf)?;
    spool_section(&mut report, &budgets)?;
    if options.throughput {
        let figures = crate::throughput::measure_throughput(options.messages)?;
        let memory = &figures.appliance.memory;
        memory_section(&mut report, &budgets, static_ram, memory.stack_high_water_bytes, memory.heap_used_bytes);
        report.sections.push(throughput_section(&figures));
    }
    let mut document = header();
    for section in &report.sections {
        document.push('\n');
        document.push_str(section);
    }
    document.push('\n');
    document.push_str(&verdict_section(&report));
    println!("{document}");
    let path = repository_root().join("BENCHMARKS.md");
    std::fs::write(&path, &document)?;
    eprintln!("xtask: wrote {}", path.display());
    let over = report.verdicts.iter().filter(|verdict| !verdict.within()).count();
    if options.check && over > 0 {
        return Err(format!("{over} figures over budget (see BENCHMARKS.md)").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_spreads_and_separators() {
        let row = OperationRow { name: "x".into(), budget_key: None, samples: vec![100, 102, 98, 101, 99] };
        assert_eq!(row.median(), 100);
        assert!((row.spread() - 0.04).abs() < 1e-9);
        assert_eq!(human(1_048_576.0), "1,048,576");
        assert_eq!(human(999.0), "999");
        assert_eq!(human(1.056), "1.06");
    }

    #[test]
    fn options_parse_and_refuse_unknown_flags() {
        let parsed = options(&["--check".into(), "--messages".into(), "3".into()]).unwrap();
        assert!(parsed.check && parsed.messages == 3 && parsed.throughput && parsed.operations && parsed.repeats == 10);
        let parsed = options(&["--no-operations".into(), "--repeats".into(), "4".into()]).unwrap();
        assert!(!parsed.operations && parsed.repeats == 4);
        assert!(options(&["--fast".into()]).is_err());
        assert!(options(&["--messages".into()]).is_err());
    }
}
