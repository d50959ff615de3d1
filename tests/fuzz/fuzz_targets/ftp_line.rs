#![no_main]

// The body is shared with tests/fuzz_props.rs, which runs it under proptest.
#[path = "../targets.rs"]
#[allow(dead_code)]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::ftp_line(data));
