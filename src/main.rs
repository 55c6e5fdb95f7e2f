//! The `clusterd` binary: `clusterd serve` runs the service; `clusterd example-data`
//! writes a small example collection for the quickstart.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    install_tls_provider();
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clusterd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every TLS client of the process (object_store's S3 client, the labelling provider's
/// reqwest client) uses rustls, and rustls panics when a client is set up without a
/// provider while more than one is compiled in, which any dependency's feature (`ring`)
/// can bring about. Choosing it once here, before anything builds a client, keeps that
/// from ever becoming a runtime failure. aws-lc-rs because object_store's `aws` feature
/// already builds it: no second provider, no extra C build.
fn install_tls_provider() {
    // Err only means a provider is already installed, which is all this asks for.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
