//! Fuzzes every decoder that reads client bytes: paths, queries, selectors, JSON and
//! YAML bodies, strict field checks, validation, Table cells and all patch types.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skiff_apiserver::fuzzing::request_decoders(data);
});
