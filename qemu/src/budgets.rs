//! The product's budgets, read from `budgets.toml` at the repository root, and the check of a
//! measured figure against one: `cargo xtask bench` and `build` report against them, and the
//! end-to-end tests hold the stack high-water they measure to its budget
//! ([`assert_stack_within_budget`]). Reads one file, calls nothing.

use crate::{repository_root, Result};

/// The budgets of `budgets.toml` (see its comments for where each comes from).
#[derive(Clone, Debug)]
pub struct Budgets {
    /// The real board's clock: instruction counts are converted to time at this rate.
    pub clock_hz: f64,
    table: toml::Table,
}

/// A figure beside its budget.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// What was measured (a row name of the table).
    pub what: String,
    /// The figure.
    pub measured: f64,
    /// The budget it is held to.
    pub budget: f64,
}

impl Verdict {
    /// Whether the figure is within its budget.
    pub fn within(&self) -> bool {
        self.measured <= self.budget
    }
}

impl Budgets {
    /// Reads `budgets.toml`.
    pub fn load() -> Result<Budgets> {
        let path = repository_root().join("budgets.toml");
        let text = std::fs::read_to_string(&path).map_err(|error| format!("{}: {error}", path.display()))?;
        let table: toml::Table = text.parse().map_err(|error| format!("{}: {error}", path.display()))?;
        let clock_hz = table.get("clock_hz").and_then(toml::Value::as_integer).ok_or("budgets.toml: clock_hz missing")? as f64;
        Ok(Budgets { clock_hz, table })
    }

    /// The budget `section.key` (`instructions.unlock`), if the file sets one.
    pub fn get(&self, key: &str) -> Option<f64> {
        let (section, name) = key.split_once('.')?;
        let value = self.table.get(section)?.get(name)?;
        value.as_integer().map(|integer| integer as f64).or_else(|| value.as_float())
    }

    /// Milliseconds that `instructions` take at the board's clock (one instruction per cycle).
    pub fn milliseconds(&self, instructions: f64) -> f64 {
        instructions / self.clock_hz * 1000.0
    }

    /// `measured` against the budget `key`; `None` when the file sets no such budget.
    pub fn verdict(&self, what: &str, key: &str, measured: f64) -> Option<Verdict> {
        Some(Verdict { what: what.to_string(), measured, budget: self.get(key)? })
    }
}

/// Fails the calling test when `high_water` (the stack high-water `/health` reports, painted at
/// reset) is above `budgets.toml`'s `ram.stack_high_water_bytes`: the budget the RAM sum counts
/// twice is then not what the firmware needs, whatever path went deeper. Prints the figure.
pub fn assert_stack_within_budget(scenario: &str, high_water: u64) {
    let budget = Budgets::load().expect("budgets.toml").get("ram.stack_high_water_bytes").expect("ram.stack_high_water_bytes") as u64;
    eprintln!("stack high-water {scenario}: {high_water} B (budget {budget} B)");
    assert!(high_water > 0, "{scenario}: /health reports no stack high-water");
    assert!(high_water <= budget, "{scenario}: stack high-water {high_water} B is above budgets.toml's {budget} B");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_budgets_parse_and_convert_at_250_mhz() {
        let budgets = Budgets::load().unwrap();
        assert_eq!(budgets.get("flash.image_bytes"), Some(1_048_576.0));
        assert_eq!(budgets.get("spool.programmed_per_message"), Some(1.1));
        assert_eq!(budgets.get("instructions.nothing"), None);
        assert!((budgets.milliseconds(15_000_000.0) - 60.0).abs() < 1e-9);
        let over = budgets.verdict("handshake", "instructions.tls_client_handshake", 15_000_001.0).unwrap();
        assert!(!over.within());
        assert!(budgets.verdict("handshake", "instructions.tls_client_handshake", 15_000_000.0).unwrap().within());
    }
}
