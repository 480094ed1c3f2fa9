//! The `golambda` command: parse the settings, run the server, report a failure.

use golambda::config::{Command, HELP};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = std::env::vars().collect();
    let result = match Command::parse(&args, &env) {
        Ok(Command::Help) => {
            print!("{HELP}");
            Ok(())
        }
        Ok(Command::Version) => {
            println!("golambda {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Ok(Command::Serve(config)) => golambda::run(*config),
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("golambda: {err}");
            ExitCode::FAILURE
        }
    }
}
