//! The `clusterd` binary: `clusterd serve` runs the service; `clusterd example-data`
//! writes a small example collection for the quickstart.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clusterd: {e}");
            ExitCode::FAILURE
        }
    }
}
