#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| agentgate_fuzz::run("policy_index", data));
