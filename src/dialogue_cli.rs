//! `check`, `graph` and `try`: the dialogue tools on the terminal.

use std::path::Path;
use std::process::ExitCode;

/// `leadbot check [PATH]`.
pub fn check(_path: &Path) -> ExitCode {
    ExitCode::FAILURE
}

/// `leadbot graph ID`.
pub fn graph(_dir: &Path, _id: &str, _locale: Option<&str>) -> ExitCode {
    ExitCode::FAILURE
}

/// `leadbot try [ID]`.
pub fn try_dialogue(_dir: &Path, _id: Option<&str>, _locale: Option<&str>) -> ExitCode {
    ExitCode::FAILURE
}
