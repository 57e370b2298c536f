//! The `keyhold` command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ca_web::cli::Cli::parse();
    match ca_web::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
