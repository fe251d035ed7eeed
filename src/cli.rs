//! The command line (SPEC section 4).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// leadbot: turns people who answered an ad into qualified, prioritised leads.
#[derive(Debug, Parser)]
#[command(name = "leadbot", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bot: long polling, workers; migrations are applied first.
    Run,
    /// Validate dialogue files (errors as file:line:column: message; exit 1 on error).
    Check {
        /// A dialogue file or folder (default: LEADBOT_DIALOGUES, else `dialogues`).
        path: Option<PathBuf>,
    },
    /// Print a dialogue as a Mermaid flowchart.
    Graph {
        /// The dialogue's id.
        dialogue_id: String,
        /// Which locale, when several files share the id.
        #[arg(long)]
        locale: Option<String>,
    },
    /// Chat with a dialogue in the terminal.
    Try {
        /// The dialogue's id (default: the one a new lead would get).
        dialogue_id: Option<String>,
        /// Which locale, when several files share the id (default: ru).
        #[arg(long)]
        locale: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Funnel per step, temperatures, sources and reply times.
    Stats {
        /// Only leads created on or after this date (YYYY-MM-DD, or RFC 3339).
        #[arg(long)]
        since: Option<String>,
    },
    /// Work with leads.
    Leads {
        #[command(subcommand)]
        command: LeadsCommand,
    },
}

/// `leadbot leads …`.
#[derive(Debug, Subcommand)]
pub enum LeadsCommand {
    /// Export leads to stdout.
    Export {
        /// csv (UTF-8 with BOM) or json.
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Only these temperatures, comma-separated: hot,warm.
        #[arg(long, value_delimiter = ',')]
        temperature: Vec<String>,
        /// Only leads created on or after this date (YYYY-MM-DD, or RFC 3339).
        #[arg(long)]
        since: Option<String>,
    },
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}
