//! The `ferry` binary: parse the command line, load the configuration, then serve or run
//! one of the small subcommands.
#![forbid(unsafe_code)]

use clap::Parser;
use ferry::cli::{Cli, Command};
use ferry::config::ConfigSource;
use std::io::BufRead;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match &cli.command {
        None | Some(Command::Run) => serve(&cli),
        Some(Command::CheckConfig { file }) => check_config(&cli, file.as_ref()),
        Some(Command::HashPassword) => hash_password(),
        Some(Command::Binder(args)) => {
            ferry::observe::log::init(&args.log_config());
            ferry::binder::server::run(args)
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn serve(cli: &Cli) -> i32 {
    let config = match cli.overrides.load(&cli.overrides.source()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferry: configuration error: {e}");
            return 2;
        }
    };
    ferry::observe::log::init(&config.log);
    let overrides = cli.overrides.clone();
    let source = overrides.source();
    ferry::server::run(config, Box::new(move || overrides.load(&source)))
}

fn check_config(cli: &Cli, file: Option<&std::path::PathBuf>) -> i32 {
    let source = match file {
        Some(f) => ConfigSource::Explicit(f.clone()),
        None => cli.overrides.source(),
    };
    match cli.overrides.load(&source) {
        Ok(config) => {
            print!("{}", config.to_toml());
            0
        }
        Err(e) => {
            eprintln!("ferry: configuration error: {e}");
            2
        }
    }
}

fn hash_password() -> i32 {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        eprintln!("ferry: cannot read a password from standard input");
        return 2;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("ferry: empty password");
        return 2;
    }
    match ferry::auth::hash_password(password) {
        Ok(phc) => {
            println!("{phc}");
            0
        }
        Err(e) => {
            eprintln!("ferry: {e}");
            1
        }
    }
}
