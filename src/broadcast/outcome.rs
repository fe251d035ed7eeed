//! What became of each claimed recipient, recorded in batches: everything that finished while
//! the previous batch was being written goes into the next transaction, so the number of writes
//! follows the database's speed rather than the send rate.
//!
//! A send's outcome is recorded after its request; until then the row stays `sending`, and a
//! crash leaves it `unknown` (never sent again).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::app::App;
use crate::storage::broadcasts::{self as store, Broadcast};
use crate::storage::{self, StorageError, Tx};

/// Most outcomes written in one transaction.
const MAX_BATCH: usize = 256;

/// What to record about one recipient (or its broadcast).
#[derive(Debug)]
pub enum Outcome {
    /// Telegram accepted the offer.
    Sent {
        recipient_id: i64,
        lead_id: i64,
        broadcast: Arc<Broadcast>,
        message_id: Option<i64>,
        at: i64,
    },
    /// Back to `pending` (or `cancelled` if its broadcast was), to be tried at `at`.
    Retry {
        recipient_id: i64,
        at: i64,
        error: Option<String>,
        /// The request was never made: the attempt does not count.
        undo_attempt: bool,
    },
    /// `failed` for good.
    Failed { recipient_id: i64, error: String },
    /// The lead blocked the bot (403): the recipient and the lead are marked blocked.
    Blocked {
        recipient_id: i64,
        chat_id: i64,
        error: String,
    },
    /// Telegram answered 429: the whole broadcast waits until `until`.
    Paused { broadcast_id: i64, until: i64 },
}

/// An outcome and the in-flight permit it holds until it is written.
#[derive(Debug)]
pub struct Record {
    pub outcome: Outcome,
    pub permit: Option<OwnedSemaphorePermit>,
}

impl Record {
    /// An outcome holding no permit.
    pub fn new(outcome: Outcome) -> Record {
        Record {
            outcome,
            permit: None,
        }
    }
}

/// Writes outcomes until every sender of `rx` is gone and the channel is drained.
pub async fn record_all(app: Arc<App>, mut rx: mpsc::UnboundedReceiver<Record>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write_batch(&app, &batch).await;
        // Permits go back once their outcomes are written.
        batch.clear();
    }
}

async fn write_batch(app: &App, batch: &[Record]) {
    let outcomes: Vec<&Outcome> = batch.iter().map(|r| &r.outcome).collect();
    match write(app, &outcomes).await {
        Ok(()) => {}
        Err(e) if outcomes.len() > 1 => {
            tracing::warn!(error = %e, outcomes = outcomes.len(), "cannot record a batch of offer outcomes; recording them one by one");
            for o in outcomes {
                if let Err(e) = write(app, &[o]).await {
                    log_lost(o, &e);
                }
            }
        }
        Err(e) => {
            for o in outcomes {
                log_lost(o, &e);
            }
        }
    }
}

fn log_lost(o: &Outcome, e: &StorageError) {
    // A row left `sending` becomes `unknown` at the next start: never doubled.
    tracing::error!(error = %e, outcome = kind(o), "cannot record an offer's outcome");
}

fn kind(o: &Outcome) -> &'static str {
    match o {
        Outcome::Sent { .. } => "sent",
        Outcome::Retry { .. } => "retry",
        Outcome::Failed { .. } => "failed",
        Outcome::Blocked { .. } => "blocked",
        Outcome::Paused { .. } => "paused",
    }
}

/// Writes outcomes in one transaction; leads that blocked the bot are marked after it commits.
async fn write(app: &App, outcomes: &[&Outcome]) -> Result<(), StorageError> {
    let db = &app.db;
    let mut tx = db.begin().await?;
    for o in outcomes {
        write_one(&mut tx, o).await?;
    }
    tx.commit().await?;
    for o in outcomes {
        if let Outcome::Blocked { chat_id, .. } = o {
            storage::leads::set_blocked_by_chat(db, *chat_id, true).await?;
        }
    }
    Ok(())
}

async fn write_one(tx: &mut Tx, o: &Outcome) -> Result<(), StorageError> {
    match o {
        Outcome::Sent {
            recipient_id,
            lead_id,
            broadcast,
            message_id,
            at,
        } => {
            store::mark_sent(tx, *recipient_id, *message_id, *at).await?;
            storage::messages::record(
                tx,
                &storage::messages::NewMessage {
                    lead_id: *lead_id,
                    direction: "out",
                    kind: "offer",
                    text: Some(&broadcast.text),
                    update_id: None,
                    outbox_id: None,
                    telegram_message_id: *message_id,
                    author_id: None,
                },
                *at,
            );
        }
        Outcome::Retry {
            recipient_id,
            at,
            error,
            undo_attempt,
        } => {
            store::retry_at(tx, *recipient_id, *at, error.as_deref(), *undo_attempt).await?;
        }
        Outcome::Failed {
            recipient_id,
            error,
        } => store::mark_final(tx, *recipient_id, "failed", error).await?,
        Outcome::Blocked {
            recipient_id,
            error,
            ..
        } => store::mark_final(tx, *recipient_id, "blocked", error).await?,
        Outcome::Paused {
            broadcast_id,
            until,
        } => store::pause_until(tx, *broadcast_id, *until).await?,
    }
    Ok(())
}
