use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: a rebuild's writers and the server's requests
/// build and drop many small JSON values, and glibc's malloc spent a third of a rebuild's
/// client time in `malloc`, `free` and `malloc_consolidate` (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
