//! The process runtime's supervisor as a binary of its own (the `skiff` binary runs
//! the same code as `skiff process-shim`): `skiff-process-shim run <container-dir>`.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

fn main() {
    let code = skiff_agent::runtime::process::shim_main(std::env::args().skip(1).collect());
    std::process::exit(code);
}
