//! `greenlight`: the headless face of Greenlight. Same engine, same data
//! directory and the same safety as the desktop app (approve once, follow to
//! the end, history), for terminals, home servers and scripts.
//!
//! Exit codes: 0 success, 1 an operation failed (per-node outcomes are in the
//! output), 2 usage error, 3 authentication needed (or no keychain).

mod args;
mod blynk;
mod commands;
mod demo;
mod logs;
mod notify;
mod output;
mod rollout;
mod service;

use std::process::ExitCode;

use clap::Parser;

/// An error that decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Exit 1: an operation failed.
    Failed(String),
    /// Exit 2: the command line makes no sense.
    Usage(String),
    /// Exit 3: a login (or the keychain) is needed.
    Auth(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Failed(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Auth(_) => 3,
        }
    }
}

impl From<greenlight_core::Error> for Failure {
    /// Core decides what kind of failure it is (one table for the CLI's
    /// exit codes and the app's error kinds).
    fn from(e: greenlight_core::Error) -> Self {
        use greenlight_core::setup::ErrorClass;
        match e.class() {
            ErrorClass::Auth | ErrorClass::Keychain => Failure::Auth(e.plain()),
            ErrorClass::Usage => Failure::Usage(e.plain()),
            ErrorClass::UntrustedCertificate | ErrorClass::Failed => Failure::Failed(e.plain()),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Failed(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    logs::init(matches!(cli.command, args::Command::Watch));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("greenlight: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            match &f {
                Failure::Failed(m) | Failure::Usage(m) | Failure::Auth(m) if !m.is_empty() => {
                    eprintln!("greenlight: {m}")
                }
                _ => {}
            }
            ExitCode::from(f.code())
        }
    }
}
