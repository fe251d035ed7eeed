//! The HTTP side: accepting connections (which can be cut on demand), reading JSON, form
//! and multipart parameters, and long polling.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, FromRequest, Multipart, Query, Request, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use super::methods::{Faulted, Upload};
use super::state::{RecordedRequest, Reply, State};
use crate::support::bot_api::{self, MethodSpec};

/// State shared between the server task and the test's handle.
pub(super) struct Shared {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    pub(super) shutdown: watch::Sender<bool>,
}

impl Shared {
    pub(super) fn new(state: State) -> Self {
        Self {
            state: Mutex::new(state),
            changed: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
        }
    }

    /// Locks the state; a panic elsewhere while holding the lock does not hide the state
    /// from the test that wants to report it.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state and wakes everyone waiting for a change.
    pub(super) fn update<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        let result = change(&mut self.lock());
        self.changed.send_modify(|version| *version += 1);
        result
    }

    /// A receiver that fires on every later state change.
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// A TCP listener whose connections a handler can cut without answering.
pub(super) struct KillableListener(pub(super) TcpListener);

/// One accepted connection, handed to handlers as connect info.
#[derive(Debug, Clone)]
pub(super) struct Connection {
    #[allow(dead_code)]
    peer: SocketAddr,
    killed: Arc<AtomicBool>,
}

impl Connection {
    /// Makes every further read or write on the connection fail, so hyper drops it and the
    /// client sees the socket close with no response.
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = Connection;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, peer)) => {
                    // Nagle would add 40 ms to small answers; real Telegram is not that slow.
                    let _ = stream.set_nodelay(true);
                    let killed = Arc::new(AtomicBool::new(false));
                    let io = KillableStream {
                        inner: stream,
                        killed: Arc::clone(&killed),
                    };
                    return (io, Connection { peer, killed });
                }
                // Accept errors (e.g. too many open files) are transient; back off briefly.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Connection {
            peer: self.0.local_addr()?,
            killed: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP stream that starts failing once its connection is killed.
pub(super) struct KillableStream {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
}

impl KillableStream {
    fn check(&self) -> io::Result<()> {
        if self.killed.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection cut by the fake",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Every request lands here: `/bot<token>/<method>`.
pub(super) async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    request: Request,
) -> Response {
    let path = request.uri().path().to_owned();
    let Some((token, method_name)) = split_path(&path) else {
        return json_response(404, not_found());
    };
    let known = shared.update(|s| {
        if !s.tokens.iter().any(|t| t == token) {
            s.tokens.push(token.to_owned());
        }
        s.only_token.as_deref().is_none_or(|only| only == token)
    });
    if !known {
        let unauthorized = Reply::Error {
            code: 401,
            description: "Unauthorized".to_owned(),
            retry_after: None,
        };
        let method = bot_api::method(method_name).map_or(method_name, |spec| spec.name.as_str());
        return answer(&shared, method, Value::Null, unauthorized);
    }
    let Some(spec) = bot_api::method(method_name) else {
        let body = not_found();
        record(&shared, method_name, Value::Null, Some(404), body.clone());
        return json_response(404, body);
    };
    let (params, files) = match read_params(request, spec).await {
        Ok(read) => read,
        Err(description) => {
            return answer(&shared, &spec.name, Value::Null, Reply::bad(description));
        }
    };
    if let Err(description) = spec.validate(&params) {
        return answer(
            &shared,
            &spec.name,
            Value::Object(params),
            Reply::bad(description),
        );
    }
    if spec.name == "getUpdates" {
        return match get_updates(&shared, &params).await {
            Polled::Recorded(reply) => {
                let (status, body) = reply.http().unwrap_or((500, Value::Null));
                json_response(status, body)
            }
            Polled::Answer(reply) => answer(&shared, &spec.name, Value::Object(params), reply),
        };
    }
    // Handled and recorded under one lock: a test that sees what a request did (a message in a
    // chat) also sees the request and its status.
    let (reply, http) = shared.update(|s| {
        let reply = s.handle(&spec.name, &params, &files);
        let http = reply.http();
        push_request(s, &spec.name, Value::Object(params), http.clone());
        (reply, http)
    });
    match reply {
        Reply::Hang => {
            // The connection closing (the client's timeout) drops this future, and the guard
            // counts the request as abandoned.
            let _abandoned = Abandoned(shared.clone());
            let mut shutdown = shared.shutdown.subscribe();
            let _ = shutdown.wait_for(|&stopped| stopped).await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Reply::Close => {
            connection.kill();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        _ => {
            let (status, body) = http.unwrap_or((500, Value::Null));
            json_response(status, body)
        }
    }
}

fn split_path(path: &str) -> Option<(&str, &str)> {
    let mut segments = path.trim_start_matches('/').split('/');
    let token = segments.next()?.strip_prefix("bot")?;
    let method = segments.next()?;
    if segments.next().is_some() || token.is_empty() || method.is_empty() {
        return None;
    }
    Some((token, method))
}

fn not_found() -> Value {
    json!({"ok": false, "error_code": 404, "description": "Not Found"})
}

fn record(shared: &Shared, method: &str, params: Value, status: Option<u16>, response: Value) {
    shared.update(|s| push_request(s, method, params, status.map(|status| (status, response))));
}

/// Records a request with its HTTP answer (`None`: hung or closed).
fn push_request(state: &mut State, method: &str, params: Value, http: Option<(u16, Value)>) {
    let (status, response) = match http {
        Some((status, body)) => (Some(status), body),
        None => (None, Value::Null),
    };
    state.requests.push(RecordedRequest {
        method: method.to_owned(),
        params,
        status,
        response,
    });
}

fn answer(shared: &Shared, method: &str, params: Value, reply: Reply) -> Response {
    let (status, body) = reply.http().unwrap_or((500, Value::Null));
    record(shared, method, params, Some(status), body.clone());
    json_response(status, body)
}

fn json_response(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

type Params = Map<String, Value>;

/// Reads parameters the ways Telegram accepts them: query string, JSON body, urlencoded
/// form, or multipart form with files.
async fn read_params(
    request: Request,
    spec: &MethodSpec,
) -> Result<(Params, HashMap<String, Upload>), String> {
    let mut params = Map::new();
    let mut files = HashMap::new();
    if request.uri().query().is_some() {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(request.uri())
            .map_err(|e| format!("Bad Request: can't parse query string: {e}"))?;
        for (name, value) in pairs {
            params.insert(name.clone(), spec.coerce_text(&name, &value));
        }
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| format!("Bad Request: can't parse multipart body: {e}"))?;
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| format!("Bad Request: can't parse multipart body: {e}"))?
        {
            let name = field.name().unwrap_or_default().to_owned();
            let file_name = field.file_name().map(str::to_owned);
            let bytes = field
                .bytes()
                .await
                .map_err(|e| format!("Bad Request: can't read multipart field {name}: {e}"))?;
            if file_name.is_some() {
                // A file uploaded directly under a parameter's name stands for that parameter.
                if spec.field(&name).is_some() {
                    params.insert(name.clone(), json!(format!("attach://{name}")));
                }
                files.insert(
                    name,
                    Upload {
                        file_name,
                        bytes: bytes.to_vec(),
                    },
                );
            } else {
                let text = String::from_utf8_lossy(&bytes);
                params.insert(name.clone(), spec.coerce_text(&name, &text));
            }
        }
        return Ok((params, files));
    }
    let body = Bytes::from_request(request, &())
        .await
        .map_err(|e| format!("Bad Request: can't read body: {e}"))?;
    if body.is_empty() {
        return Ok((params, files));
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(&body)?;
        for (name, value) in pairs {
            params.insert(name.clone(), spec.coerce_text(&name, &value));
        }
        return Ok((params, files));
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => {
            params.extend(map);
            Ok((params, files))
        }
        Ok(_) => Err("Bad Request: request body must be a JSON object".into()),
        Err(e) => Err(format!("Bad Request: can't parse JSON body: {e}")),
    }
}

/// Decodes an urlencoded body with the same parser `Query` uses, via a synthetic URI.
fn serde_urlencoded_pairs(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text =
        std::str::from_utf8(body).map_err(|_| "Bad Request: body is not UTF-8".to_owned())?;
    let uri: axum::http::Uri = format!("/?{text}")
        .parse()
        .map_err(|_| "Bad Request: can't parse form body".to_owned())?;
    Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|Query(pairs)| pairs)
        .map_err(|e| format!("Bad Request: can't parse form body: {e}"))
}

const CONFLICT_POLL: &str = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running";
const CONFLICT_WEBHOOK: &str = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";

/// Long polling as Telegram does it: confirm by offset, then wait until an update arrives,
/// the timeout passes, or a newer `getUpdates` call takes over.
/// What a `getUpdates` came to: a batch recorded with the updates it hands out, or an answer for
/// the caller to record.
enum Polled {
    Recorded(Reply),
    Answer(Reply),
}

async fn get_updates(shared: &Shared, params: &Params) -> Polled {
    let as_i64 = |key: &str| params.get(key).and_then(Value::as_i64);
    let limit = usize::try_from(as_i64("limit").unwrap_or(100).clamp(1, 100)).unwrap_or(100);
    let timeout = u64::try_from(as_i64("timeout").unwrap_or(0)).unwrap_or(0);
    let started = shared.update(|s| {
        match s.take_fault("getUpdates", params) {
            Some(Faulted::Answer(reply)) => return Err(reply),
            Some(Faulted::DoThenHang) => return Err(Reply::Hang),
            None => {}
        }
        if s.webhook.is_some() {
            return Err(Reply::Error {
                code: 409,
                description: CONFLICT_WEBHOOK.into(),
                retry_after: None,
            });
        }
        if let Some(allowed) = params.get("allowed_updates").and_then(Value::as_array) {
            s.allowed_updates = allowed
                .iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
        }
        s.confirm(as_i64("offset"));
        s.poll_generation += 1;
        Ok(s.poll_generation)
    });
    let generation = match started {
        Ok(generation) => generation,
        Err(reply) => return Polled::Answer(reply),
    };
    let mut changed = shared.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        {
            let mut state = shared.lock();
            if state.poll_generation != generation {
                return Polled::Answer(Reply::Error {
                    code: 409,
                    description: CONFLICT_POLL.into(),
                    retry_after: None,
                });
            }
            let batch = state.deliverable(limit);
            if !batch.is_empty() || Instant::now() >= deadline {
                // Recorded under the lock that hands the updates out: a test that sees them
                // delivered also sees the request that carried them.
                let reply = Reply::Ok(Value::Array(batch));
                push_request(
                    &mut state,
                    "getUpdates",
                    Value::Object(params.clone()),
                    reply.http(),
                );
                drop(state);
                shared.changed.send_modify(|version| *version += 1);
                return Polled::Recorded(reply);
            }
        }
        tokio::select! {
            result = changed.changed() => {
                if result.is_err() {
                    return Polled::Answer(Reply::Ok(json!([])));
                }
            }
            () = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.wait_for(|&stopped| stopped) => return Polled::Answer(Reply::Ok(json!([]))),
        }
    }
}

impl State {
    /// Applies a `getUpdates` offset: positive confirms everything before it, negative keeps
    /// only the last `-offset` updates.
    fn confirm(&mut self, offset: Option<i64>) {
        match offset {
            Some(offset) if offset > 0 => {
                self.updates.retain(|u| u.id >= offset);
                self.offset_confirmed = self.offset_confirmed.max(offset);
            }
            Some(offset) if offset < 0 => {
                let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
                while self.updates.len() > keep {
                    self.updates.pop_front();
                }
                let first = self.updates.front().map_or(self.next_update_id, |u| u.id);
                self.offset_confirmed = self.offset_confirmed.max(first);
            }
            _ => {}
        }
    }

    /// Up to `limit` updates the bot asked for; updates of types it did not ask for are
    /// dropped, as Telegram never delivers them.
    fn deliverable(&mut self, limit: usize) -> Vec<Value> {
        const NOT_BY_DEFAULT: [&str; 3] =
            ["chat_member", "message_reaction", "message_reaction_count"];
        let allowed = &self.allowed_updates;
        self.updates.retain(|u| {
            if allowed.is_empty() {
                !NOT_BY_DEFAULT.contains(&u.kind.as_str())
            } else {
                allowed.contains(&u.kind)
            }
        });
        self.updates
            .iter()
            .take(limit)
            .map(|u| u.json.clone())
            .collect()
    }
}

/// Counts a hung request as abandoned when its handler is dropped before the fake shuts down:
/// the client closed the connection.
struct Abandoned(Arc<Shared>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        if !*self.0.shutdown.borrow() {
            self.0.update(|s| s.abandoned += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_path;

    #[test]
    fn path_splits_into_token_and_method() {
        assert_eq!(split_path("/bot123:ABC/getMe"), Some(("123:ABC", "getMe")));
        assert_eq!(split_path("/bot/getMe"), None);
        assert_eq!(split_path("/file/bot1:A/x"), None);
        assert_eq!(split_path("/bot1:A/getMe/extra"), None);
    }
}
