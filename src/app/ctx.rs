//! The unit of work for one update: its transaction, its time, and the side effects it enqueues.

use crate::outbox::Action;
use crate::outbox::answers::Answer;
use crate::storage::leads::Lead;
use crate::storage::{self, StorageError, Tx};

/// One update being applied.
pub struct Ctx {
    pub tx: Tx,
    pub now: i64,
    pub update_id: i64,
    seq: u32,
    /// Set when something was enqueued, so the outbox worker is woken after commit.
    pub enqueued: bool,
    /// Answers to button presses, sent once the transaction commits (see `outbox::answers`).
    pub answers: Vec<Answer>,
}

impl Ctx {
    /// Starts the unit of work.
    pub fn new(tx: Tx, now: i64, update_id: i64) -> Ctx {
        Ctx {
            tx,
            now,
            update_id,
            seq: 0,
            enqueued: false,
            answers: Vec::new(),
        }
    }

    /// A fresh idempotency key derived from the update, so replaying it cannot double anything.
    pub fn next_key(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}:u{}:{}", self.update_id, self.seq)
    }

    /// Enqueues an action for a chat with a given idempotency key; returns the outbox id when new.
    pub async fn enqueue_keyed(
        &mut self,
        key: &str,
        lead_id: Option<i64>,
        chat_id: i64,
        action: &Action,
    ) -> Result<Option<i64>, StorageError> {
        let json =
            serde_json::to_string(action).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let id = storage::outbox::enqueue(
            &mut self.tx,
            key,
            lead_id,
            chat_id,
            &json,
            action.in_chat_order(),
            self.now,
        )
        .await?;
        self.enqueued |= id.is_some();
        Ok(id)
    }

    /// Sends a message to a lead and keeps it in the lead's history. Both are written when the
    /// transaction commits (see `storage::later`).
    pub fn send_to_lead(&mut self, lead: &Lead, action: Action) -> Result<(), StorageError> {
        let Some(chat_id) = lead.chat_id else {
            return Ok(());
        };
        let key = self.next_key("p");
        let text = match &action {
            Action::SendMessage { text, .. } => Some(text.clone()),
            Action::SendDocument { file_name, .. } => Some(format!("[document] {file_name}")),
            _ => None,
        };
        self.enqueue_at_commit(&key, Some(lead.id), chat_id, &action)?;
        if let Some(text) = text {
            storage::messages::record_reply(
                &mut self.tx,
                &storage::messages::NewMessage {
                    lead_id: lead.id,
                    direction: "out",
                    kind: "text",
                    text: Some(&text),
                    update_id: Some(self.update_id),
                    outbox_id: None,
                    telegram_message_id: None,
                    author_id: None,
                },
                &key,
                self.now,
            );
        }
        Ok(())
    }

    /// [`Ctx::enqueue_keyed`], written when the transaction commits.
    fn enqueue_at_commit(
        &mut self,
        key: &str,
        lead_id: Option<i64>,
        chat_id: i64,
        action: &Action,
    ) -> Result<(), StorageError> {
        let json =
            serde_json::to_string(action).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        storage::outbox::enqueue_at_commit(
            &mut self.tx,
            key,
            lead_id,
            chat_id,
            json,
            action.in_chat_order(),
            self.now,
        );
        self.enqueued = true;
        Ok(())
    }

    /// Answers a button press (removes the spinner), optionally with a short notice, once the
    /// transaction commits. Not an outbox row: see `outbox::answers`.
    pub fn answer_callback(&mut self, chat_id: i64, query_id: &str, text: Option<&str>) {
        self.answers.push(Answer {
            chat_id,
            query_id: query_id.to_owned(),
            text: text.map(str::to_owned),
        });
    }
}
