//! `homemx`: the owner's command-line tool; all logic is in the library.

fn main() {
    std::process::exit(homemx_cli::run(std::env::args_os()));
}
