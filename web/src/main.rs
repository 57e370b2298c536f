//! The `keyhold` command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ca_web::cli::Cli::parse();
    // Rust ignores SIGPIPE, so `keyhold certs list | head -1` made println! panic with
    // "Broken pipe" (exit 101). Commands that print end quietly, as Unix tools do, when
    // their reader goes away. The server keeps ignoring it: a client that disconnects must
    // surface as a write error on that connection, never end the process.
    if !cli.command.is_server() {
        sigpipe::reset();
    }
    match ca_web::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
