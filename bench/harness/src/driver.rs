//! The simulated prospects. Each one walks the default dialogue (or, against the echo ceiling,
//! just sends texts), reacting to the bot's message it is waiting for. Closed loop: the answer
//! goes out the moment the question arrives. Open loop: prospects with an answer ready queue up
//! and a scheduler releases them at the offered rate.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::fake::unix_now;

/// What the prospects say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// The default dialogue: /start, consent, name, phone, need, timing, offers (7 steps).
    Dialogue,
    /// One text after another; any reply counts.
    Echo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No new steps; replies still arriving are recorded.
    Idle,
    Closed,
    Open,
}

/// Open loop: most prospects in flight at once.
const MAX_PROSPECTS: usize = 20_000;

struct Prospect {
    /// Dialogue: index of the step whose reply is awaited. Echo: count of texts sent.
    phase: u8,
    /// When the update of the current step was handed to the fake's queue.
    sent_at: Instant,
    /// Waiting for the bot's reply to the current step.
    waiting: bool,
    /// Open loop: the next update, waiting for its turn.
    next: Option<Value>,
}

pub struct Driver {
    script: Script,
    mode: Mode,
    prospects: HashMap<i64, Prospect>,
    next_user: i64,
    next_message: i64,
    /// Latency of each step, microseconds, while recording.
    pub hist: Histogram<u64>,
    pub recording: bool,
    /// Steps answered (while recording) and in total.
    pub steps: u64,
    pub steps_total: u64,
    /// Dialogues walked to their end.
    pub finished: u64,
    /// Bot messages to a prospect that were not what it waited for.
    pub other: u64,
    /// Prospects with a step in flight.
    pub outstanding: usize,
    ready: VecDeque<i64>,
    outgoing: Vec<Value>,
    /// Open loop: steps that could not be offered (too many prospects in flight).
    pub not_offered: u64,
    trace: Option<i64>,
}

impl Driver {
    pub fn idle() -> Driver {
        Driver::new(Script::Echo, 1)
    }

    /// `first_user` keeps user ids of different runs apart.
    pub fn new(script: Script, first_user: i64) -> Driver {
        Driver {
            script,
            mode: Mode::Idle,
            prospects: HashMap::new(),
            next_user: first_user,
            next_message: 1,
            hist: Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| {
                Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
            }),
            recording: false,
            steps: 0,
            steps_total: 0,
            finished: 0,
            other: 0,
            outstanding: 0,
            ready: VecDeque::new(),
            outgoing: Vec::new(),
            not_offered: 0,
            trace: std::env::var("BENCH_TRACE").ok().map(|_| first_user),
        }
    }

    /// Closed loop: `n` prospects start at once.
    pub fn start_closed(&mut self, n: usize, now: Instant) {
        self.mode = Mode::Closed;
        for _ in 0..n {
            let (id, first) = self.new_prospect();
            self.send(id, first, now);
        }
    }

    pub fn start_open(&mut self) {
        self.mode = Mode::Open;
        self.ready.clear();
    }

    /// Stops issuing steps; prospects with an answer ready drop out.
    pub fn stop(&mut self) {
        self.mode = Mode::Idle;
        self.ready.clear();
        self.prospects.retain(|_, p| p.waiting);
    }

    pub fn begin_recording(&mut self) {
        self.hist.reset();
        self.steps = 0;
        self.recording = true;
    }

    pub fn end_recording(&mut self) {
        self.recording = false;
    }

    /// Open loop: releases `n` steps (prospects with an answer ready, else new prospects).
    pub fn release(&mut self, n: u64, now: Instant) {
        for _ in 0..n {
            let id = loop {
                match self.ready.pop_front() {
                    Some(id) if self.prospects.get(&id).is_some_and(|p| p.next.is_some()) => {
                        break Some(id);
                    }
                    Some(_) => continue,
                    None => break None,
                }
            };
            match id {
                Some(id) => {
                    let update = self.prospects.get_mut(&id).and_then(|p| p.next.take());
                    if let Some(u) = update {
                        self.send(id, u, now);
                    }
                }
                None if self.prospects.len() < MAX_PROSPECTS => {
                    let (id, first) = self.new_prospect();
                    self.send(id, first, now);
                }
                None => self.not_offered += 1,
            }
        }
    }

    pub fn take_outgoing(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.outgoing)
    }

    fn new_prospect(&mut self) -> (i64, Value) {
        let id = self.next_user;
        self.next_user += 1;
        self.prospects.insert(
            id,
            Prospect {
                phase: 0,
                sent_at: Instant::now(),
                waiting: false,
                next: None,
            },
        );
        let first = match self.script {
            Script::Dialogue => self.command(id, "/start bench"),
            Script::Echo => self.text(id, "hello 0"),
        };
        (id, first)
    }

    fn send(&mut self, id: i64, update: Value, now: Instant) {
        if let Some(p) = self.prospects.get_mut(&id) {
            p.sent_at = now;
            if !p.waiting {
                p.waiting = true;
                self.outstanding += 1;
            }
            if self.trace == Some(id) {
                eprintln!("[trace] prospect {id} -> {update}");
            }
            self.outgoing.push(update);
        }
    }

    /// A message the bot sent; returns updates to push at once.
    pub fn on_bot_message(&mut self, now: Instant, chat_id: i64, message: &Value) -> Vec<Value> {
        if self.trace == Some(chat_id) {
            eprintln!(
                "[trace] bot -> {chat_id}: {}",
                message.get("text").and_then(Value::as_str).unwrap_or("")
            );
        }
        let Some(p) = self.prospects.get_mut(&chat_id) else {
            return Vec::new();
        };
        if !p.waiting {
            self.other += 1;
            return Vec::new();
        }
        let buttons = buttons_of(message);
        let phase = p.phase;
        let expected = match self.script {
            Script::Echo => true,
            Script::Dialogue => match phase {
                0 | 3 | 4 | 5 => !buttons.is_empty(),
                _ => buttons.is_empty(),
            },
        };
        if !expected {
            // The greeting before the first question is expected noise.
            if !(self.script == Script::Dialogue && phase == 0) {
                self.other += 1;
            }
            return Vec::new();
        }
        // The step is answered.
        let latency = now.saturating_duration_since(p.sent_at);
        p.waiting = false;
        self.outstanding = self.outstanding.saturating_sub(1);
        self.steps_total += 1;
        if self.recording {
            self.steps += 1;
            let us = u64::try_from(latency.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            let _ = self.hist.record(us.min(self.hist.high()));
        }
        let next_phase = phase + 1;
        let next = match self.script {
            Script::Echo => Some(self.text(chat_id, &format!("hello {next_phase}"))),
            Script::Dialogue => {
                let msg_id = message.get("message_id").cloned().unwrap_or(json!(1));
                match phase {
                    0 => buttons
                        .first()
                        .map(|d| self.callback(chat_id, message, d, &msg_id)),
                    1 => Some(self.text(chat_id, "Anna")),
                    2 => Some(self.contact(chat_id)),
                    3..=5 => {
                        let pick = match phase {
                            3 => (chat_id % 3) as usize,
                            4 => ((chat_id / 3) % 3) as usize,
                            _ => (chat_id % 2) as usize,
                        };
                        let data = buttons.get(pick.min(buttons.len() - 1)).cloned();
                        data.map(|d| self.callback(chat_id, message, &d, &msg_id))
                    }
                    _ => None,
                }
            }
        };
        let done = next.is_none();
        if let Some(p) = self.prospects.get_mut(&chat_id) {
            p.phase = next_phase;
        }
        if done {
            self.finished += 1;
            self.prospects.remove(&chat_id);
        }
        match self.mode {
            Mode::Idle => {
                self.prospects.remove(&chat_id);
                Vec::new()
            }
            Mode::Closed => {
                let (id, update) = match next {
                    Some(u) => (chat_id, u),
                    None => self.new_prospect(),
                };
                self.send(id, update, now);
                self.take_outgoing()
            }
            Mode::Open => {
                if let Some(u) = next {
                    if let Some(p) = self.prospects.get_mut(&chat_id) {
                        p.next = Some(u);
                    }
                    self.ready.push_back(chat_id);
                }
                Vec::new()
            }
        }
    }

    fn user(&self, id: i64) -> Value {
        json!({"id": id, "is_bot": false, "first_name": format!("P{id}"), "language_code": "en"})
    }

    fn message(&mut self, id: i64) -> Value {
        let mid = self.next_message;
        self.next_message += 1;
        json!({
            "message_id": mid,
            "date": unix_now(),
            "chat": {"id": id, "type": "private", "first_name": format!("P{id}")},
            "from": self.user(id),
        })
    }

    fn command(&mut self, id: i64, text: &str) -> Value {
        let mut m = self.message(id);
        let len = text
            .split(' ')
            .next()
            .map(|c| c.encode_utf16().count())
            .unwrap_or(0);
        m["text"] = json!(text);
        m["entities"] = json!([{"type": "bot_command", "offset": 0, "length": len}]);
        json!({"message": m})
    }

    fn text(&mut self, id: i64, text: &str) -> Value {
        let mut m = self.message(id);
        m["text"] = json!(text);
        json!({"message": m})
    }

    fn contact(&mut self, id: i64) -> Value {
        let mut m = self.message(id);
        let digits = 1_000_000 + id.rem_euclid(9_000_000);
        m["contact"] =
            json!({"phone_number": format!("+7912{digits}"), "first_name": "Anna", "user_id": id});
        json!({"message": m})
    }

    fn callback(&mut self, id: i64, message: &Value, data: &str, _mid: &Value) -> Value {
        let n = self.next_message;
        self.next_message += 1;
        json!({"callback_query": {
            "id": format!("{id}-{n}"),
            "from": self.user(id),
            "message": message,
            "chat_instance": format!("ci{id}"),
            "data": data,
        }})
    }
}

/// The callback data of every inline button of a message, row by row.
fn buttons_of(message: &Value) -> Vec<String> {
    message
        .get("reply_markup")
        .and_then(|m| m.get("inline_keyboard"))
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .filter_map(Value::as_array)
                .flatten()
                .filter_map(|b| b.get("callback_data").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
