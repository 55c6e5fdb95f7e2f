#![no_main]

// libfuzzer-sys's panic hook aborts at the panic, before an unwind can reach the upload's
// catch around parquet's decoder (a known parquet 60 panic, see README "Fuzzing"): the
// default hook reports the panic and lets it unwind. A panic nothing catches still ends at
// libfuzzer-sys's catch_unwind, which aborts: it is still a crash.
libfuzzer_sys::fuzz_target!(
    init: {
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| {
        let _ = clusterd::fuzzing::documents_parquet(data);
    }
);
