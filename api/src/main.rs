use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = api::cli::Cli::parse();
    api::telemetry::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("clinic: error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(api::cli::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, naming the variable to fix; the details are in the log above.
            eprintln!("clinic: error: {err}");
            ExitCode::FAILURE
        }
    }
}
