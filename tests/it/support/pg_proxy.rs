//! A TCP proxy in front of PostgreSQL that can lose the answer to a commit, as a network failure
//! at that moment would: it passes the commit on, so the server applies it, then drops the
//! answer and closes the connection. The client sees an error for a transaction that was
//! committed.
//!
//! It reads the protocol just enough to know which statements a transaction ran (the text of
//! each prepared statement, named at `Parse`, executed at `Bind`; simple queries), how many rows
//! each returned, and where it commits (`COMMIT`, or a statement's `Sync` outside a transaction).
//! Each group of client messages up to a `Sync` (or a simple query) gets one `ReadyForQuery`
//! back; the server's answer to a group is held until then, and the answer to a commit chosen by
//! a rule is dropped and the connection closed. The bot must connect with `sslmode=disable`
//! ([`PgProxy::url`] adds it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A statement run: its SQL and how many rows it returned.
pub type Ran = (String, usize);

/// Whether a transaction's statements, in order, are of the kind a rule picks.
type Matches = Box<dyn Fn(&[Ran]) -> bool + Send>;

/// Which commits lose their answer: those of transactions whose statements `matches`, the next
/// `left` times.
struct Rule {
    name: &'static str,
    left: usize,
    lost: usize,
    matches: Matches,
}

type Rules = Arc<Mutex<Vec<Rule>>>;

pub struct PgProxy {
    addr: SocketAddr,
    rules: Rules,
    task: JoinHandle<()>,
}

impl PgProxy {
    /// A proxy on `127.0.0.1`, port 0, to the server of `url` (a `postgres://` URL).
    pub async fn start(url: &str) -> PgProxy {
        let upstream =
            host_port(url).unwrap_or_else(|| panic!("no host:port in the PostgreSQL URL {url}"));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let rules: Rules = Arc::default();
        let task = tokio::spawn(accept(listener, upstream, rules.clone()));
        PgProxy { addr, rules, task }
    }

    /// `url` (a database on the proxied server) through the proxy.
    pub fn url(&self, url: &str) -> String {
        let upstream = host_port(url).unwrap_or_default();
        let through = url.replacen(&upstream, &self.addr.to_string(), 1);
        let joint = if through.contains('?') { '&' } else { '?' };
        format!("{through}{joint}sslmode=disable")
    }

    /// The next `times` commits of transactions whose statements (each with the rows it
    /// returned, in order) `matches` are applied by the server and their answer lost.
    pub fn lose_commits(
        &self,
        name: &'static str,
        times: usize,
        matches: impl Fn(&[Ran]) -> bool + Send + 'static,
    ) {
        self.lock().push(Rule {
            name,
            left: times,
            lost: 0,
            matches: Box::new(matches),
        });
    }

    /// How many commits the rule `name` lost so far.
    pub fn lost(&self, name: &str) -> usize {
        self.lock()
            .iter()
            .filter(|r| r.name == name)
            .map(|r| r.lost)
            .sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `host:port` of a `postgres://user@host:port/db` URL.
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    Some(
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, h)| h)
            .to_owned(),
    )
}

async fn accept(listener: TcpListener, upstream: String, rules: Rules) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        connections.spawn(serve(client, upstream.clone(), rules.clone()));
        while connections.try_join_next().is_some() {}
    }
}

async fn serve(client: TcpStream, upstream: String, rules: Rules) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    // Answers go on as they come, not held back for more to send with them.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (from_client, to_client) = client.into_split();
    let (from_server, to_server) = server.into_split();
    // One entry per group of client messages, in order: the statements it ran.
    let (groups, answers) = mpsc::unbounded_channel();
    let upstream = tokio::spawn(client_to_server(from_client, to_server, groups));
    server_to_client(from_server, to_client, answers, rules).await;
    // Dropping both halves of both sockets closes the connection on both sides.
    upstream.abort();
}

/// What the connection's messages so far tell about its transaction.
#[derive(Default)]
struct Session {
    in_transaction: bool,
    /// Statements run in the current transaction.
    transaction: Vec<Ran>,
}

impl Session {
    /// A group of messages ran `statements`, which returned `rows` rows (the last statement's):
    /// whether its answer is to be lost.
    fn group(&mut self, statements: Vec<String>, rows: usize, rules: &Rules) -> bool {
        let mut committed: Option<Vec<Ran>> = None;
        let last = statements.len().saturating_sub(1);
        for (i, sql) in statements.into_iter().enumerate() {
            let word = sql
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            let ran = (sql, if i == last { rows } else { 0 });
            match word.as_str() {
                "BEGIN" | "START" => {
                    self.in_transaction = true;
                    self.transaction.clear();
                }
                "COMMIT" | "END" if self.in_transaction => {
                    self.in_transaction = false;
                    committed = Some(std::mem::take(&mut self.transaction));
                }
                "ROLLBACK" | "ABORT" => {
                    self.in_transaction = false;
                    self.transaction.clear();
                }
                _ if self.in_transaction => self.transaction.push(ran),
                _ => committed.get_or_insert_with(Vec::new).push(ran),
            }
        }
        let Some(statements) = committed.filter(|s| !s.is_empty()) else {
            return false;
        };
        let mut rules = rules.lock().unwrap_or_else(|e| e.into_inner());
        match rules
            .iter_mut()
            .find(|r| r.left > 0 && (r.matches)(&statements))
        {
            Some(rule) => {
                rule.left -= 1;
                rule.lost += 1;
                true
            }
            None => false,
        }
    }
}

async fn client_to_server(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    groups: mpsc::UnboundedSender<Vec<String>>,
) -> std::io::Result<()> {
    // The start-up message has no type byte; it is answered up to a `ReadyForQuery` too.
    let len = from.read_u32().await?;
    let mut startup = vec![0; (len as usize).saturating_sub(4)];
    from.read_exact(&mut startup).await?;
    let _ = groups.send(Vec::new());
    to.write_u32(len).await?;
    to.write_all(&startup).await?;
    // Prepared statements' text by name (`""` the unnamed one).
    let mut prepared: HashMap<String, String> = HashMap::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut ran: Vec<String> = Vec::new();
    loop {
        let kind = from.read_u8().await?;
        let len = from.read_u32().await?;
        let mut body = vec![0; (len as usize).saturating_sub(4)];
        from.read_exact(&mut body).await?;
        pending.push(kind);
        pending.extend_from_slice(&len.to_be_bytes());
        pending.extend_from_slice(&body);
        let mut fields = body.split(|b| *b == 0).map(|f| String::from_utf8_lossy(f));
        let ends_group = match kind {
            b'P' => {
                let name = fields.next().unwrap_or_default().into_owned();
                let sql = fields.next().unwrap_or_default().into_owned();
                prepared.insert(name, sql);
                false
            }
            b'B' => {
                let _portal = fields.next();
                let name = fields.next().unwrap_or_default();
                if let Some(sql) = prepared.get(name.as_ref()) {
                    ran.push(sql.clone());
                }
                false
            }
            b'Q' => {
                ran.push(fields.next().unwrap_or_default().into_owned());
                true
            }
            b'S' => true,
            b'X' => {
                to.write_all(&pending).await?;
                return Ok(());
            }
            _ => false,
        };
        if ends_group {
            let _ = groups.send(std::mem::take(&mut ran));
            to.write_all(&pending).await?;
            pending.clear();
        }
    }
}

/// Passes the server's answers on, a group's at its `ReadyForQuery`; drops a group's answer to
/// be lost and returns, which closes the connection.
async fn server_to_client(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut groups: mpsc::UnboundedReceiver<Vec<String>>,
    rules: Rules,
) {
    let mut session = Session::default();
    let mut answer: Vec<u8> = Vec::new();
    let mut rows = 0;
    loop {
        let Ok(kind) = from.read_u8().await else {
            return;
        };
        let Ok(len) = from.read_u32().await else {
            return;
        };
        let mut body = vec![0; (len as usize).saturating_sub(4)];
        if from.read_exact(&mut body).await.is_err() {
            return;
        }
        answer.push(kind);
        answer.extend_from_slice(&len.to_be_bytes());
        answer.extend_from_slice(&body);
        match kind {
            // A row.
            b'D' => rows += 1,
            // Ready for query: the group's answer is complete.
            b'Z' => {
                let statements = groups.recv().await.unwrap_or_default();
                if session.group(statements, rows, &rules) {
                    return;
                }
                if to.write_all(&answer).await.is_err() {
                    return;
                }
                answer.clear();
                rows = 0;
            }
            _ => {}
        }
    }
}
