//! A fast fake Bot API on 127.0.0.1: `getUpdates` long polling fed by the simulated prospects,
//! and every method a bot under test calls, answered at once. Requests arrive as JSON (teloxide)
//! or as url-encoded or multipart forms (aiogram).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, Request, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::driver::Driver;

pub const BOT_ID: i64 = 7_000_000_001;

/// Telegram's global limit in the broadcast scenario.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: u64,
}

/// Counters and timings of what the bot under test did.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub requests: u64,
    pub get_updates: u64,
    pub send_message: u64,
    pub too_many: u64,
    /// Button presses offered, and `answerCallbackQuery` calls received.
    pub presses: u64,
    pub answers: u64,
    /// When each press not yet answered was offered, by callback query id.
    pub pressed_at: std::collections::HashMap<String, Instant>,
    /// From a press being offered to its answer, in microseconds.
    pub answer_us: Vec<u64>,
    pub first_get_updates: Option<Instant>,
    /// Deliveries to chats at or above `broadcast_from` (the seeded recipients).
    pub broadcast_sent: u64,
    pub broadcast_first: Option<Instant>,
    pub broadcast_last: Option<Instant>,
    pub broadcast_chats: Option<std::collections::HashSet<i64>>,
    pub broadcast_duplicates: u64,
}

pub struct State {
    /// Updates not yet confirmed by an offset, oldest first.
    queue: VecDeque<(i64, Value)>,
    next_update_id: i64,
    next_message_id: i64,
    pub counters: Counters,
    pub driver: Driver,
    pub rate: Option<RateLimit>,
    window: (u64, u64),
    started: Instant,
    pub broadcast_from: i64,
}

pub struct Fake {
    state: Mutex<State>,
    new_updates: Notify,
    pub addr: SocketAddr,
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Fake {
    pub async fn start() -> anyhow::Result<Arc<Fake>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let fake = Arc::new(Fake {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                next_update_id: 1,
                next_message_id: 1,
                counters: Counters::default(),
                driver: Driver::idle(),
                rate: None,
                window: (0, 0),
                started: Instant::now(),
                broadcast_from: i64::MAX,
            }),
            new_updates: Notify::new(),
            addr,
        });
        let app = Router::new()
            .route("/{bot}/{method}", axum::routing::any(handle))
            .with_state(fake.clone());
        tokio::spawn(async move {
            // Each accepted connection gets TCP_NODELAY through axum's default listener.
            let _ = axum::serve(listener, app).await;
        });
        Ok(fake)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets everything from the previous bot: a new bot starts with an empty queue.
    pub fn reset(&self, driver: Driver) {
        let mut s = self.lock();
        s.queue.clear();
        s.counters = Counters::default();
        s.driver = driver;
        s.rate = None;
        s.window = (0, 0);
        s.started = Instant::now();
        s.broadcast_from = i64::MAX;
    }

    /// Pushes updates built by the driver and wakes long polls.
    pub fn wake(&self) {
        self.new_updates.notify_waiters();
    }

    async fn get_updates(&self, params: &Map<String, Value>) -> Value {
        let offset = int(params, "offset").unwrap_or(0);
        let limit = int(params, "limit").unwrap_or(100).clamp(1, 100) as usize;
        let timeout = int(params, "timeout").unwrap_or(0).clamp(0, 50) as u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        loop {
            let notified = self.new_updates.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                s.counters.get_updates += 1;
                if s.counters.first_get_updates.is_none() {
                    s.counters.first_get_updates = Some(Instant::now());
                }
                while s.queue.front().is_some_and(|(id, _)| *id < offset) {
                    s.queue.pop_front();
                }
                // Prospects whose updates are now handed out: the clock of their step runs.
                if !s.queue.is_empty() {
                    let batch: Vec<Value> =
                        s.queue.iter().take(limit).map(|(_, u)| u.clone()).collect();
                    return Value::Array(batch);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Value::Array(Vec::new());
            }
        }
    }

    fn enqueue(s: &mut State, mut update: Value) {
        let id = s.next_update_id;
        s.next_update_id += 1;
        if let Some(o) = update.as_object_mut() {
            o.insert("update_id".into(), json!(id));
            if let Some(q) = o
                .get("callback_query")
                .and_then(|q| q.get("id"))
                .and_then(Value::as_str)
            {
                s.counters.presses += 1;
                s.counters.pressed_at.insert(q.to_owned(), Instant::now());
            }
        }
        s.queue.push_back((id, update));
    }

    /// Lets the driver push the updates it has decided on.
    pub fn flush_driver(&self) {
        let mut s = self.lock();
        let out = s.driver.take_outgoing();
        let any = !out.is_empty();
        for u in out {
            Fake::enqueue(&mut s, u);
        }
        drop(s);
        if any {
            self.wake();
        }
    }

    fn send_message(&self, params: &Map<String, Value>) -> Result<Value, Box<Response>> {
        let chat_id = int(params, "chat_id").ok_or_else(|| Box::new(bad("chat_id is required")))?;
        let text = params
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let markup = json_param(params, "reply_markup");
        let mut s = self.lock();
        if let Some(limit) = s.rate {
            let sec = s.started.elapsed().as_secs();
            if s.window.0 != sec {
                s.window = (sec, 0);
            }
            if s.window.1 >= limit.per_second {
                s.counters.too_many += 1;
                return Err(Box::new(too_many()));
            }
            s.window.1 += 1;
        }
        s.counters.send_message += 1;
        let message_id = s.next_message_id;
        s.next_message_id += 1;
        let now = Instant::now();
        if chat_id >= s.broadcast_from {
            let c = &mut s.counters;
            c.broadcast_sent += 1;
            c.broadcast_first.get_or_insert(now);
            c.broadcast_last = Some(now);
            if !c
                .broadcast_chats
                .get_or_insert_with(Default::default)
                .insert(chat_id)
            {
                c.broadcast_duplicates += 1;
            }
        }
        let message = message_json(message_id, chat_id, &text, markup.as_ref());
        let out = s.driver.on_bot_message(now, chat_id, &message);
        let any = !out.is_empty();
        for u in out {
            Fake::enqueue(&mut s, u);
        }
        drop(s);
        if any {
            self.wake();
        }
        Ok(message)
    }
}

pub fn message_json(message_id: i64, chat_id: i64, text: &str, markup: Option<&Value>) -> Value {
    let chat = if chat_id < 0 {
        json!({"id": chat_id, "type": "supergroup", "title": "Staff"})
    } else {
        json!({"id": chat_id, "type": "private", "first_name": "Prospect"})
    };
    let mut m = json!({
        "message_id": message_id,
        "date": unix_now(),
        "chat": chat,
        "from": {"id": BOT_ID, "is_bot": true, "first_name": "Bench", "username": "bench_bot"},
        "text": text,
    });
    if let (Some(markup), Some(o)) = (markup, m.as_object_mut())
        && markup.get("inline_keyboard").is_some()
    {
        o.insert("reply_markup".into(), markup.clone());
    }
    m
}

fn int(params: &Map<String, Value>, key: &str) -> Option<i64> {
    match params.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A parameter that carries JSON: an object in a JSON body, a string in a form.
fn json_param(params: &Map<String, Value>, key: &str) -> Option<Value> {
    match params.get(key)? {
        Value::String(s) => serde_json::from_str(s).ok(),
        v => Some(v.clone()),
    }
}

fn ok(result: Value) -> Response {
    json_response(StatusCode::OK, json!({"ok": true, "result": result}))
}

fn bad(description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"ok": false, "error_code": 400, "description": format!("Bad Request: {description}")}),
    )
}

fn too_many() -> Response {
    json_response(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1",
               "parameters": {"retry_after": 1}}),
    )
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(bytes),
    )
        .into_response()
}

async fn params_of(req: Request) -> Result<Map<String, Value>, Response> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if ctype.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, &())
            .await
            .map_err(|_| bad("bad multipart"))?;
        let mut map = Map::new();
        while let Ok(Some(field)) = mp.next_field().await {
            let name = field.name().unwrap_or("").to_owned();
            let text = field.text().await.unwrap_or_default();
            map.insert(name, Value::String(text));
        }
        return Ok(map);
    }
    let (parts, body) = req.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .map_err(|_| bad("body too large"))?;
    let mut map = Map::new();
    if let Some(q) = parts.uri.query()
        && let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(q)
    {
        for (k, v) in pairs {
            map.insert(k, Value::String(v));
        }
    }
    if bytes.is_empty() {
        return Ok(map);
    }
    if ctype.starts_with("application/json") {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(o)) => map.extend(o),
            _ => return Err(bad("body is not a JSON object")),
        }
    } else {
        let pairs = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .map_err(|_| bad("bad form"))?;
        for (k, v) in pairs {
            map.insert(k, Value::String(v));
        }
    }
    Ok(map)
}

async fn handle(
    AxumState(fake): AxumState<Arc<Fake>>,
    Path((_bot, method)): Path<(String, String)>,
    req: Request,
) -> Response {
    let params = match params_of(req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    fake.lock().counters.requests += 1;
    match method.to_ascii_lowercase().as_str() {
        "getupdates" => ok(fake.get_updates(&params).await),
        "sendmessage" => match fake.send_message(&params) {
            Ok(m) => ok(m),
            Err(r) => *r,
        },
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Bench", "username": "bench_bot",
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false
        })),
        // The bot checks at start that it is in the staff chat.
        "getchatmember" => ok(json!({
            "user": {"id": BOT_ID, "is_bot": true, "first_name": "Bench", "username": "bench_bot"},
            "status": "member"
        })),
        "editmessagetext" | "editmessagereplymarkup" => {
            let chat_id = int(&params, "chat_id").unwrap_or(1);
            let mid = int(&params, "message_id").unwrap_or(1);
            let text = params.get("text").and_then(Value::as_str).unwrap_or("");
            ok(message_json(mid, chat_id, text, None))
        }
        "copymessage" => {
            let mut s = fake.lock();
            let id = s.next_message_id;
            s.next_message_id += 1;
            ok(json!({"message_id": id}))
        }
        "getwebhookinfo" => {
            ok(json!({"url": "", "has_custom_certificate": false, "pending_update_count": 0}))
        }
        "getmycommands" => ok(json!([])),
        // The staff chat is a plain group, as Telegram answers for one.
        "createforumtopic" => bad("the chat is not a forum"),
        "answercallbackquery" => {
            let mut s = fake.lock();
            s.counters.answers += 1;
            let id = params
                .get("callback_query_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(at) = s.counters.pressed_at.remove(id) {
                let us = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
                s.counters.answer_us.push(us);
            }
            ok(Value::Bool(true))
        }
        _ => ok(Value::Bool(true)),
    }
}
