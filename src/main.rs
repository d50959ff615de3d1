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
        Some(Command::Sessions { json }) => sessions(&cli, *json),
        Some(Command::TftpResolve { name, client, mac, write }) => {
            tftp_resolve(&cli, name, *client, *mac, *write)
        }
        Some(Command::Binder(args)) => {
            ferry::observe::log::init(&args.log_config());
            ferry::binder::server::run(args)
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The configuration from the usual layers and the flags; exit code 2 when it is invalid.
fn load(cli: &Cli) -> Result<ferry::config::Config, i32> {
    cli.overrides.load(&cli.overrides.source()).map_err(|e| {
        eprintln!("ferry: configuration error: {e}");
        2
    })
}

fn serve(cli: &Cli) -> i32 {
    let config = match load(cli) {
        Ok(c) => c,
        Err(code) => return code,
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

/// Prints the live session view of the server this configuration describes.
fn sessions(cli: &Cli, json: bool) -> i32 {
    let config = match load(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !config.metrics.enabled {
        eprintln!(
            "ferry: the session view is served by the metrics endpoint, which this configuration disables; \
             set `[metrics] enabled = true` (it listens on metrics.listen, {}) and restart ferry",
            config.metrics.listen
        );
        return 1;
    }
    let report = match ferry::observe::sessions::fetch(config.metrics.listen) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferry: {e}");
            return 1;
        }
    };
    if !report.workers_unanswered.is_empty() {
        eprintln!(
            "ferry: workers {:?} did not answer in time; their sessions are missing",
            report.workers_unanswered
        );
    }
    if json {
        match serde_json::to_string(&report.sessions) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("ferry: {e}");
                return 1;
            }
        }
    } else {
        print!("{}", ferry::observe::sessions::table(&report.sessions));
    }
    0
}

/// Exit 0 when the request would be served, 1 when refused, 2 for a configuration error.
fn tftp_resolve(
    cli: &Cli,
    name: &str,
    client: std::net::IpAddr,
    mac: Option<ferry::tftp::roots::MacAddr>,
    write: bool,
) -> i32 {
    let config = match load(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match ferry::io::tftp::resolve::report(&config, name, client, mac, write) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(text) => {
            print!("{text}");
            1
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
