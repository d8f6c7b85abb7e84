//! Fuzz target: the command line parser and the path parser on arbitrary bytes.
#![no_main]

use homemx_smtp::address::{parse_forward_path, parse_reverse_path, ForwardPath, ReversePath};
use homemx_smtp::command::{parse_command, Command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(command) = parse_command(data) {
        match command {
            Command::Mail { reverse_path: ReversePath::Path(path), .. } | Command::Recipient(ForwardPath::Path(path)) => {
                let mailbox = path.mailbox;
                assert!(mailbox.as_str().len() <= 254);
                assert_eq!(mailbox.local_part().raw().len() + 1 + mailbox.domain().as_str().len()
                    + if matches!(mailbox.domain(), homemx_smtp::Domain::AddressLiteral(_)) { 2 } else { 0 },
                    mailbox.as_str().len());
                let _ = mailbox.local_part().content().count();
                let _ = mailbox.local_part().content_is_dot_string();
            }
            Command::Auth { initial_response: Some(response), .. } => {
                assert!(!response.is_empty() && !response.contains(&b' '));
            }
            _ => {}
        }
    }
    let _ = parse_reverse_path(data);
    if let Ok((path, rest)) = parse_forward_path(data) {
        assert!(rest.len() < data.len());
        let _ = path;
    }
});
