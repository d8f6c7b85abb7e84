//! `homemx`: the owner's CLI (being written).
fn main() {}
