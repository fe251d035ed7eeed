//! The command line (SPEC section 4).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Limited-time offers to a segment of leads.
    Broadcast {
        #[command(subcommand)]
        command: BroadcastCommand,
    },
}

/// `leadbot broadcast …`.
#[derive(Debug, Subcommand)]
pub enum BroadcastCommand {
    /// Schedule a broadcast; the running bot sends it.
    Create(BroadcastCreate),
    /// The latest broadcasts.
    List,
    /// Progress of a broadcast: sent/total, failed, blocked, unknown, rate, ETA, clicks.
    Show {
        /// The broadcast's id.
        id: i64,
    },
    /// Stop a scheduled or running broadcast.
    Cancel {
        /// The broadcast's id.
        id: i64,
    },
    /// Delete a broadcast's sent messages (Telegram allows it within 48 hours of sending).
    Recall {
        /// The broadcast's id.
        id: i64,
    },
}

/// `leadbot broadcast create`.
#[derive(Debug, Args)]
pub struct BroadcastCreate {
    #[command(flatten)]
    pub text: BroadcastText,
    /// Label of the call-to-action button (1–64 characters).
    #[arg(long)]
    pub button: Option<String>,
    /// Who gets it, e.g. temperature=cold|warm,source=vk_*,inactive=7d (see README).
    #[arg(long)]
    pub segment: String,
    /// How long the offer lasts after the start, e.g. 48h (default 48h).
    #[arg(long, conflicts_with = "expires_at")]
    pub expires_in: Option<String>,
    /// When the offer ends (RFC 3339).
    #[arg(long)]
    pub expires_at: Option<String>,
    /// When sending starts (RFC 3339; default now).
    #[arg(long)]
    pub at: Option<String>,
    /// Points a click on the button adds to the lead's score (default 30).
    #[arg(long)]
    pub score: Option<i32>,
}

/// The offer's text: inline or from a file (Telegram HTML).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct BroadcastText {
    /// The text (Telegram HTML: b, i, u, s, a href, code, pre, blockquote, tg-spoiler...).
    #[arg(long)]
    pub text: Option<String>,
    /// A file holding the text.
    #[arg(long)]
    pub text_file: Option<PathBuf>,
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
