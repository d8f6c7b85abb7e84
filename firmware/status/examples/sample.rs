//! Writes the sample page of a busy appliance to firmware/status/sample/status.html (and the
//! matching sample/status.json) so a person can look at it; a test checks they stay current.
//!
//! `cargo run -p homemx-status --example sample [quiet|locked|busy|every|hostile] [OUT.html]`
//! renders another snapshot to another file (for screenshots).

#[path = "../tests/common/mod.rs"]
mod common;

use homemx_status::{render_json, render_page, JSON_BUFFER_SIZE, PAGE_BUFFER_SIZE};

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let which = arguments.first().map(String::as_str).unwrap_or("busy");
    let snapshot = match which {
        "quiet" => common::quiet(),
        "locked" => common::locked(),
        "empty" => common::empty(),
        "every" => common::every_alert(),
        "hostile" => common::hostile(),
        _ => common::busy(),
    };
    let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/sample");
    let html_path = arguments
        .get(1)
        .cloned()
        .unwrap_or_else(|| format!("{directory}/status.html"));
    let mut page = vec![0u8; PAGE_BUFFER_SIZE];
    let length = render_page(&snapshot, &mut page).expect("page fits");
    std::fs::write(&html_path, &page[..length]).expect("write page");
    println!("{html_path}: {length} bytes");
    if arguments.get(1).is_none() {
        let mut json = vec![0u8; JSON_BUFFER_SIZE];
        let length = render_json(&snapshot, &mut json).expect("JSON fits");
        let json_path = format!("{directory}/status.json");
        std::fs::write(&json_path, &json[..length]).expect("write JSON");
        println!("{json_path}: {length} bytes");
    }
}
