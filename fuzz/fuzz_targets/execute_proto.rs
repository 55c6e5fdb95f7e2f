#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = clusterd::fuzzing::execute_proto(data);
});
