//! The compiler and checker: a dialogue file in, a [`Script`] with typed step ids out, or every
//! problem in the file with its line and column.
//!
//! Judgement calls (documented in `dialogues/README.md`): a branch whose last rule has an `if` is
//! an error, because a lead must never be left without a next step; rules after a catch-all are
//! a warning, since they are harmless but never used; a loop of `say`/`branch` steps that asks
//! nothing is an error, because the engine would spin through it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::expr::{self, Var};
use super::format::{
    self, CHOICE_KEYS, DIALOGUE_KEYS, Key, Node, NodeValue, Pos, RULE_KEYS, RawStep, RawThresholds,
    STEP_KEYS,
};
use super::{Choice, Rule, Script, Step, StepId, StepKind, Thresholds};

/// Telegram's limit for one message.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Telegram's limit for a button label we allow (64 characters keeps buttons readable).
pub const MAX_LABEL_CHARS: usize = 64;
/// Thresholds used when a file has none.
pub const DEFAULT_THRESHOLDS: Thresholds = Thresholds { warm: 30, hot: 70 };

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The file is refused.
    Error,
    /// The file works, but probably not as meant.
    Warning,
}

/// One problem found in a dialogue file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given to [`compile`].
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (characters).
    pub column: u32,
    /// What is wrong, in a sentence fragment.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Diagnostic {
            file, line, column, ..
        } = self;
        match self.severity {
            Severity::Error => write!(f, "{file}:{line}:{column}: {}", self.message),
            Severity::Warning => write!(f, "{file}:{line}:{column}: warning: {}", self.message),
        }
    }
}

/// A compiled dialogue and the warnings found on the way.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The script, ready for the engine.
    pub script: Script,
    /// Problems that do not stop the dialogue from working.
    pub warnings: Vec<Diagnostic>,
}

/// Compiles one dialogue file; `file` is only used in diagnostics.
pub fn compile(file: &str, source: &str) -> Result<Compiled, Vec<Diagnostic>> {
    let mut cx = Checker {
        file,
        source,
        diags: Vec::new(),
    };
    let script = cx.compile();
    cx.diags.sort_by_key(|d| (d.line, d.column));
    match script {
        Some(script) if !cx.diags.iter().any(|d| d.severity == Severity::Error) => Ok(Compiled {
            script,
            warnings: cx.diags,
        }),
        _ => Err(cx.diags),
    }
}

/// The first 16 hex characters of the SHA-256 of a file: the dialogue's version.
pub fn version_of(source: &str) -> String {
    let digest = Sha256::digest(source.as_bytes());
    let mut text = hex::encode(digest);
    text.truncate(16);
    text
}

struct Checker<'a> {
    file: &'a str,
    source: &'a str,
    diags: Vec<Diagnostic>,
}

/// A step as read, before targets are resolved.
struct Parsed<'a> {
    key: &'a Key,
    node: Node,
    raw: Option<RawStep>,
}

/// Where the compiled step's edges go, for the graph checks.
#[derive(Default)]
struct Edges {
    targets: Vec<StepId>,
    asks: bool,
    ends: bool,
}

impl<'a> Checker<'a> {
    fn push(&mut self, pos: Pos, severity: Severity, message: String) {
        self.diags.push(Diagnostic {
            file: self.file.to_owned(),
            line: pos.line.max(1),
            column: pos.column.max(1),
            message,
            severity,
        });
    }

    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(pos, Severity::Error, message.into());
    }

    fn warn(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(pos, Severity::Warning, message.into());
    }

    /// Deserializes a node, turning a failure into a diagnostic (with a key suggestion).
    fn read<'n, T: serde::Deserialize<'n>>(&mut self, node: &'n Node) -> Option<T> {
        match format::from_node::<T>(node) {
            Ok(v) => Some(v),
            Err(e) => {
                let pos = e.pos.unwrap_or(node.pos);
                let message = match &e.unknown_field {
                    Some((key, allowed)) => unknown_key_message(key, allowed),
                    None => e.message,
                };
                self.error(pos, message);
                None
            }
        }
    }

    /// Reports unknown and repeated keys of a mapping and returns it without them, so that the
    /// rest can be read and checked; `None` when the node is not a mapping.
    fn clean_map(&mut self, node: &Node, allowed: &[&str], what: &str) -> Option<Node> {
        let Some(entries) = node.entries() else {
            self.error(
                node.pos,
                format!("{what} must be a mapping, found {}", node.value.kind()),
            );
            return None;
        };
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        let mut kept = Vec::new();
        for (key, value) in entries {
            if !allowed.contains(&key.name.as_str()) {
                self.error(key.pos, unknown_key_message(&key.name, allowed));
                continue;
            }
            if let Some(first) = seen.get(key.name.as_str()) {
                self.error(
                    key.pos,
                    format!(
                        "duplicate key '{}' (first written at line {})",
                        key.name, first.line
                    ),
                );
                continue;
            }
            seen.insert(&key.name, key.pos);
            kept.push((key.clone(), value.clone()));
        }
        Some(Node {
            pos: node.pos,
            value: NodeValue::Map(kept),
        })
    }

    fn compile(&mut self) -> Option<Script> {
        let root = match format::parse_tree(self.source) {
            Ok(root) => root,
            Err(e) => {
                self.error(e.pos, format!("invalid YAML: {}", e.message));
                return None;
            }
        };
        if matches!(root.value, NodeValue::Null) {
            self.error(
                Pos::default(),
                "the file is empty: a dialogue needs id, start and steps",
            );
            return None;
        }
        let root = self.clean_map(&root, DIALOGUE_KEYS, "a dialogue file")?;
        let top = |key: &str| root.get(key).map(|(k, v)| (k.pos, v));

        let id = top("id").and_then(|(_, v)| self.read::<String>(v).map(|s| (s, v.pos)));
        let id = match id {
            Some((id, pos)) => {
                if !is_word(&id) {
                    self.error(
                        pos,
                        format!("id '{id}' may only use letters, digits, '_' and '-'"),
                    );
                }
                Some(id)
            }
            None => {
                if top("id").is_none() {
                    self.error(Pos::default(), "missing key 'id' (the dialogue's name)");
                }
                None
            }
        };

        let locale = match top("locale") {
            Some((_, v)) => self.read::<String>(v).inspect(|l| {
                if !is_locale(l) {
                    self.error(
                        v.pos,
                        format!("locale '{l}' is not a language code like ru or en-GB"),
                    );
                }
            }),
            None => Some("ru".to_owned()),
        };

        let sources = match top("sources") {
            Some((_, v)) => self.sources(v),
            None => Some(vec!["*".to_owned()]),
        };

        let thresholds = match top("thresholds") {
            Some((_, v)) => self.thresholds(v),
            None => Some(DEFAULT_THRESHOLDS),
        };

        let remind_after = match top("remind_after") {
            Some((_, v)) => self.remind_after(v),
            None => Some(Vec::new()),
        };

        let start = match top("start") {
            Some((_, v)) => self.read::<String>(v).map(|s| (s, v.pos)),
            None => {
                self.error(Pos::default(), "missing key 'start' (the first step)");
                None
            }
        };

        let Some((_, steps_node)) = top("steps") else {
            self.error(Pos::default(), "missing key 'steps'");
            return None;
        };
        let steps = self.steps(steps_node, start)?;
        Some(Script {
            id: id?,
            locale: locale?,
            sources: sources?,
            thresholds: thresholds?,
            remind_after: remind_after?,
            start: steps.0,
            steps: steps.1,
            version: version_of(self.source),
        })
    }

    fn sources(&mut self, node: &Node) -> Option<Vec<String>> {
        let list: Vec<String> = self.read(node)?;
        let items = node.items().unwrap_or_default();
        let mut ok = true;
        for (i, pattern) in list.iter().enumerate() {
            let pos = items.get(i).map_or(node.pos, |n| n.pos);
            let valid = (1..=64).contains(&pattern.len())
                && pattern
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'*'));
            if !valid {
                ok = false;
                self.error(
                    pos,
                    format!(
                        "source pattern '{pattern}' may only use A-Z, a-z, 0-9, '_', '-' and '*'"
                    ),
                );
            }
        }
        if list.is_empty() {
            self.error(
                node.pos,
                "sources is empty: no lead would get this dialogue; use [\"*\"] for all",
            );
            ok = false;
        }
        ok.then_some(list)
    }

    fn thresholds(&mut self, node: &Node) -> Option<Thresholds> {
        let clean = self.clean_map(node, &["warm", "hot"], "thresholds")?;
        let raw: RawThresholds = self.read(&clean)?;
        let pos_of = |key: &str| clean.get(key).map_or(node.pos, |(_, v)| v.pos);
        if raw.warm < 0 {
            self.error(
                pos_of("warm"),
                format!("warm threshold {} is below 0", raw.warm),
            );
            return None;
        }
        if raw.warm >= raw.hot {
            self.error(
                pos_of("hot"),
                format!(
                    "thresholds out of order: hot ({}) must be above warm ({})",
                    raw.hot, raw.warm
                ),
            );
            return None;
        }
        Some(Thresholds {
            warm: raw.warm,
            hot: raw.hot,
        })
    }

    fn remind_after(&mut self, node: &Node) -> Option<Vec<Duration>> {
        let list: Vec<String> = self.read(node)?;
        let items = node.items().unwrap_or_default();
        let mut out = Vec::new();
        for (i, text) in list.iter().enumerate() {
            let pos = items.get(i).map_or(node.pos, |n| n.pos);
            match parse_duration(text) {
                Some(d) => out.push(d),
                None => self.error(
                    pos,
                    format!("'{text}' is not a duration like 30m, 1h, 24h or 2d"),
                ),
            }
        }
        (out.len() == list.len()).then_some(out)
    }

    /// Reads, resolves and checks all steps; returns the start and the steps.
    fn steps(&mut self, node: &Node, start: Option<(String, Pos)>) -> Option<(StepId, Vec<Step>)> {
        let Some(entries) = node.entries() else {
            self.error(
                node.pos,
                format!(
                    "steps must be a mapping of step names to steps, found {}",
                    node.value.kind()
                ),
            );
            return None;
        };
        // Ids follow file order, skipping repeated names (each reported).
        let mut ids: HashMap<&str, (StepId, Pos)> = HashMap::new();
        let mut parsed: Vec<Parsed> = Vec::new();
        for (key, value) in entries {
            if let Some((_, first)) = ids.get(key.name.as_str()) {
                self.error(
                    key.pos,
                    format!(
                        "duplicate step '{}' (first defined at line {})",
                        key.name, first.line
                    ),
                );
                continue;
            }
            let Ok(index) = u16::try_from(parsed.len()) else {
                self.error(key.pos, "too many steps (at most 65535)");
                return None;
            };
            ids.insert(&key.name, (StepId(index), key.pos));
            let clean = self.clean_map(value, STEP_KEYS, &format!("step '{}'", key.name));
            let node = clean.unwrap_or_else(|| value.clone());
            let node = self.clean_nested(node);
            let raw = self.read::<RawStep>(&node);
            parsed.push(Parsed { key, node, raw });
        }
        if parsed.is_empty() {
            self.error(
                node.pos,
                "steps is empty: a dialogue needs at least one step",
            );
            return None;
        }

        let lookup: HashMap<&str, StepId> = ids.iter().map(|(k, (id, _))| (*k, *id)).collect();
        let names: Vec<&str> = parsed.iter().map(|p| p.key.name.as_str()).collect();
        let start_id = start.and_then(|(name, pos)| match lookup.get(name.as_str()) {
            Some(id) => Some(*id),
            None => {
                self.error(pos, unknown_step_message(&name, &names));
                None
            }
        });

        let mut steps = Vec::new();
        let mut edges = Vec::new();
        let mut complete = true;
        let mut saves: HashMap<String, String> = HashMap::new();
        let mut facts_set: HashSet<String> = HashSet::new();
        let mut conditions: Vec<(Pos, Vec<Var>)> = Vec::new();
        for p in &parsed {
            let compiled = p.raw.as_ref().and_then(|raw| {
                self.step(
                    p,
                    raw,
                    &lookup,
                    &names,
                    &mut saves,
                    &mut facts_set,
                    &mut conditions,
                )
            });
            match compiled {
                Some((step, e)) => {
                    steps.push(step);
                    edges.push(e);
                }
                None => {
                    complete = false;
                    // A placeholder keeps indexes aligned; the file is refused anyway.
                    steps.push(Step {
                        name: p.key.name.clone(),
                        kind: StepKind::End { text: None },
                    });
                    edges.push(Edges::default());
                }
            }
        }

        for (pos, vars) in conditions {
            for var in vars {
                match var {
                    Var::Answer(key) if !saves.contains_key(&key) => {
                        self.warn(
                            pos,
                            format!("the condition reads answer '{key}', which no step saves"),
                        );
                    }
                    Var::Fact(key) if !facts_set.contains(&key) => {
                        self.warn(
                            pos,
                            format!("the condition reads '{key}', which no step sets"),
                        );
                    }
                    _ => {}
                }
            }
        }

        let start_id = start_id?;
        // Graph checks only make sense on a whole graph; a broken step already has its error.
        if complete {
            self.graph_checks(start_id, &parsed, &edges);
        }
        Some((start_id, steps))
    }

    /// Cleans the mappings inside `choices`, `branch` and `set` of a step.
    fn clean_nested(&mut self, mut node: Node) -> Node {
        if let NodeValue::Map(entries) = &mut node.value {
            for (key, value) in entries.iter_mut() {
                let allowed = match key.name.as_str() {
                    "choices" => CHOICE_KEYS,
                    "branch" => RULE_KEYS,
                    _ => continue,
                };
                let what = if key.name == "choices" {
                    "a choice"
                } else {
                    "a branch rule"
                };
                if let NodeValue::Seq(items) = &mut value.value {
                    for item in items.iter_mut() {
                        if let Some(clean) = self.clean_map(item, allowed, what) {
                            *item = clean;
                        }
                    }
                }
            }
        }
        node
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        p: &Parsed,
        raw: &RawStep,
        lookup: &HashMap<&str, StepId>,
        names: &[&str],
        saves: &mut HashMap<String, String>,
        facts_set: &mut HashSet<String>,
        conditions: &mut Vec<(Pos, Vec<Var>)>,
    ) -> Option<(Step, Edges)> {
        let name = &p.key.name;
        let key_pos = |k: &str| p.node.get(k).map_or(p.key.pos, |(k, _)| k.pos);
        let value_pos = |k: &str| p.node.get(k).map_or(p.key.pos, |(_, v)| v.pos);
        let present: Vec<&str> = p
            .node
            .entries()
            .unwrap_or_default()
            .iter()
            .map(|(k, _)| k.name.as_str())
            .collect();
        let mut ok = true;
        let resolve = |cx: &mut Self, target: &str, pos: Pos| -> Option<StepId> {
            match lookup.get(target) {
                Some(id) => Some(*id),
                None => {
                    cx.error(pos, unknown_step_message(target, names));
                    None
                }
            }
        };
        // Keys that do not belong with the step's kind.
        let mut refuse = |cx: &mut Self, allowed: &[&str], kind: &str| {
            for k in &present {
                if !allowed.contains(k) {
                    cx.error(
                        key_pos(k),
                        format!("'{k}' does not belong in {kind} (step '{name}')"),
                    );
                    ok = false;
                }
            }
        };
        if raw.end == Some(false) {
            self.warn(value_pos("end"), "'end: false' has no effect; leave it out");
        }
        let text = |cx: &mut Self, key: &str, t: &str| {
            if t.trim().is_empty() {
                cx.error(value_pos(key), format!("the '{key}' text is empty"));
            } else if t.chars().count() > MAX_TEXT_CHARS {
                cx.error(
                    value_pos(key),
                    format!(
                        "the '{key}' text has {} characters; Telegram allows {MAX_TEXT_CHARS}",
                        t.chars().count()
                    ),
                );
            }
        };
        let set = raw.set.as_ref().map(|s| s.0.clone()).unwrap_or_default();
        facts_set.extend(set.iter().map(|(k, _)| k.clone()));
        if let Some(choices) = &raw.choices {
            for c in choices {
                if let Some(s) = &c.set {
                    facts_set.extend(s.0.iter().map(|(k, _)| k.clone()));
                }
            }
        }

        let mut out = Edges::default();
        let kind = if let Some(rules) = &raw.branch {
            refuse(self, &["branch"], "a branch step");
            if rules.is_empty() {
                self.error(value_pos("branch"), "a branch needs at least one rule");
                return None;
            }
            let items = p
                .node
                .get("branch")
                .and_then(|(_, v)| v.items())
                .unwrap_or_default();
            let mut compiled = Vec::new();
            let mut catch_all_seen = false;
            for (i, rule) in rules.iter().enumerate() {
                let item = items.get(i);
                let rule_pos = item.map_or(p.key.pos, |n| n.pos);
                let get = |k: &str| item.and_then(|n| n.get(k)).map_or(rule_pos, |(_, v)| v.pos);
                if catch_all_seen {
                    self.warn(
                        rule_pos,
                        "this rule comes after a rule without 'if' and is never used",
                    );
                }
                let condition = match &rule.condition {
                    Some(source) => match expr::parse(source) {
                        Ok(e) => {
                            conditions.push((get("if"), e.vars()));
                            Some(e)
                        }
                        Err(e) => {
                            let start = get("if");
                            let quoted = self.char_at(start).is_some_and(|c| c == '"' || c == '\'');
                            let column = source
                                .get(..e.offset.min(source.len()))
                                .map_or(e.offset, |s| s.chars().count());
                            let pos = start.shifted(column + usize::from(quoted));
                            self.error(pos, format!("condition does not parse: {}", e.message));
                            ok = false;
                            None
                        }
                    },
                    None => {
                        catch_all_seen = true;
                        None
                    }
                };
                let next = resolve(self, &rule.next, get("next"));
                if let Some(next) = next {
                    out.targets.push(next);
                    compiled.push(Rule { condition, next });
                } else {
                    ok = false;
                }
            }
            if !catch_all_seen {
                let last = items.last().map_or(value_pos("branch"), |n| n.pos);
                self.error(
                    last,
                    "the last rule of a branch must have no 'if' (a catch-all), so every lead has a next step",
                );
                ok = false;
            }
            StepKind::Branch { rules: compiled }
        } else if raw.end == Some(true) {
            refuse(self, &["end", "say"], "an end step");
            if let Some(t) = &raw.say {
                text(self, "say", t);
            }
            out.ends = true;
            StepKind::End {
                text: raw.say.clone(),
            }
        } else if let Some(choices) = &raw.choices {
            refuse(self, &["ask", "choices", "save"], "a step with choices");
            if raw.next.is_some() {
                // `refuse` already named it; say what to do instead.
                self.error(
                    value_pos("next"),
                    "put 'next' on each choice, not on the step",
                );
            }
            let Some(ask) = &raw.ask else {
                self.error(
                    p.key.pos,
                    format!("step '{name}' has choices but no 'ask' question"),
                );
                return None;
            };
            text(self, "ask", ask);
            if choices.is_empty() {
                self.error(value_pos("choices"), "choices is empty");
                return None;
            }
            if choices.len() > usize::from(u8::MAX) {
                self.error(value_pos("choices"), "too many choices (at most 255)");
                return None;
            }
            let items = p
                .node
                .get("choices")
                .and_then(|(_, v)| v.items())
                .unwrap_or_default();
            let mut labels: HashMap<String, u32> = HashMap::new();
            let mut compiled = Vec::new();
            for (i, c) in choices.iter().enumerate() {
                let item = items.get(i);
                let item_pos = item.map_or(p.key.pos, |n| n.pos);
                let get = |k: &str| item.and_then(|n| n.get(k)).map_or(item_pos, |(_, v)| v.pos);
                let label = c.label.trim();
                if label.is_empty() {
                    self.error(get("label"), "a button label is empty");
                    ok = false;
                } else if label.chars().count() > MAX_LABEL_CHARS {
                    self.error(
                        get("label"),
                        format!(
                            "the button label has {} characters; at most {MAX_LABEL_CHARS} fit",
                            label.chars().count()
                        ),
                    );
                    ok = false;
                }
                let folded = label.to_lowercase();
                if let Some(line) = labels.get(&folded) {
                    self.error(
                        get("label"),
                        format!("duplicate label '{label}' (also at line {line})"),
                    );
                    ok = false;
                } else {
                    labels.insert(folded, get("label").line);
                }
                let mut also = Vec::new();
                for alias in c.also.iter().flatten() {
                    let alias = alias.trim();
                    if alias.is_empty() || alias.chars().count() > MAX_LABEL_CHARS {
                        self.error(
                            get("also"),
                            format!(
                                "each answer in 'also' has 1 to {MAX_LABEL_CHARS} characters; '{}' does not",
                                cut_for_message(alias)
                            ),
                        );
                        ok = false;
                        continue;
                    }
                    let folded = alias.to_lowercase();
                    if let Some(line) = labels.get(&folded) {
                        self.error(
                            get("also"),
                            format!(
                                "'{alias}' in 'also' is already a label or an answer of this step (line {line}): it would pick two buttons"
                            ),
                        );
                        ok = false;
                    } else {
                        labels.insert(folded, get("also").line);
                        also.push(alias.to_owned());
                    }
                }
                let next = resolve(self, &c.next, get("next"));
                if let Some(next) = next {
                    out.targets.push(next);
                    compiled.push(Choice {
                        label: label.to_owned(),
                        also,
                        score: c.score.unwrap_or(0),
                        hot: c.hot.unwrap_or(false),
                        set: c.set.as_ref().map(|s| s.0.clone()).unwrap_or_default(),
                        next,
                    });
                } else {
                    ok = false;
                }
            }
            out.asks = true;
            let save = self.save_key(p, raw, saves)?;
            StepKind::Choice {
                text: ask.clone(),
                save,
                choices: compiled,
            }
        } else if let Some(kind) = raw.input {
            refuse(
                self,
                &["ask", "input", "save", "score", "set", "next"],
                "an input step",
            );
            let Some(ask) = &raw.ask else {
                self.error(
                    p.key.pos,
                    format!("step '{name}' has 'input' but no 'ask' question"),
                );
                return None;
            };
            text(self, "ask", ask);
            let Some(next) = &raw.next else {
                self.error(
                    p.key.pos,
                    format!("step '{name}' has 'input' but no 'next' step"),
                );
                return None;
            };
            let next = resolve(self, next, value_pos("next"))?;
            out.targets.push(next);
            out.asks = true;
            let save = self.save_key(p, raw, saves)?;
            StepKind::Input {
                text: ask.clone(),
                kind,
                save,
                score: raw.score.unwrap_or(0),
                set,
                next,
            }
        } else if raw.ask.is_some() {
            self.error(
                key_pos("ask"),
                format!("step '{name}' asks a question but has neither 'choices' nor 'input'"),
            );
            return None;
        } else if let Some(say) = &raw.say {
            refuse(self, &["say", "set", "next"], "a say step");
            text(self, "say", say);
            let Some(next) = &raw.next else {
                self.error(
                    p.key.pos,
                    format!("step '{name}' says something but has no 'next' (add 'end: true' to finish here)"),
                );
                return None;
            };
            let next = resolve(self, next, value_pos("next"))?;
            out.targets.push(next);
            StepKind::Say {
                text: say.clone(),
                set,
                next,
            }
        } else {
            self.error(
                p.key.pos,
                format!(
                    "step '{name}' does nothing: give it 'say', 'ask', 'branch' or 'end: true'"
                ),
            );
            return None;
        };
        ok.then(|| {
            (
                Step {
                    name: name.clone(),
                    kind,
                },
                out,
            )
        })
    }

    /// The key an answer is saved under, checked against the keys other steps use.
    fn save_key(
        &mut self,
        p: &Parsed,
        raw: &RawStep,
        saves: &mut HashMap<String, String>,
    ) -> Option<String> {
        let key = raw.save.clone().unwrap_or_else(|| p.key.name.clone());
        let pos = p.node.get("save").map_or(p.key.pos, |(_, v)| v.pos);
        if key.trim().is_empty() {
            self.error(pos, "'save' is empty");
            return None;
        }
        if let Some(other) = saves.get(&key) {
            self.error(
                pos,
                format!("answers of step '{other}' are already saved as '{key}'"),
            );
            return None;
        }
        saves.insert(key.clone(), p.key.name.clone());
        Some(key)
    }

    /// Reachability, termination and loops that ask nothing.
    fn graph_checks(&mut self, start: StepId, parsed: &[Parsed], edges: &[Edges]) {
        let n = edges.len();
        let mut reachable = vec![false; n];
        let mut queue = VecDeque::from([start.index()]);
        reachable[start.index()] = true;
        while let Some(i) = queue.pop_front() {
            for t in &edges[i].targets {
                if !reachable[t.index()] {
                    reachable[t.index()] = true;
                    queue.push_back(t.index());
                }
            }
        }
        // Steps from which some end step can be reached: walk edges backwards from the ends.
        let mut incoming: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, e) in edges.iter().enumerate() {
            for t in &e.targets {
                incoming[t.index()].push(i);
            }
        }
        let mut ends = vec![false; n];
        let mut queue: VecDeque<usize> = (0..n).filter(|&i| edges[i].ends).collect();
        for &i in &queue {
            ends[i] = true;
        }
        while let Some(i) = queue.pop_front() {
            for &from in &incoming[i] {
                if !ends[from] {
                    ends[from] = true;
                    queue.push_back(from);
                }
            }
        }
        let start_name = &parsed[start.index()].key.name;
        for (i, p) in parsed.iter().enumerate() {
            if !reachable[i] {
                self.error(
                    p.key.pos,
                    format!(
                        "step '{}' cannot be reached from the start step '{start_name}'",
                        p.key.name
                    ),
                );
            } else if !ends[i] {
                self.error(
                    p.key.pos,
                    format!("from step '{}' the dialogue never ends: no path leads to an 'end: true' step", p.key.name),
                );
            }
        }
        // A cycle through steps that ask nothing would spin forever: colour-marking DFS.
        let mut state = vec![0u8; n];
        for root in 0..n {
            if edges[root].asks || state[root] != 0 {
                continue;
            }
            let mut stack = vec![(root, 0usize)];
            state[root] = 1;
            while let Some((node, next)) = stack.pop() {
                if let Some(t) = edges[node].targets.get(next).map(|t| t.index()) {
                    stack.push((node, next + 1));
                    if edges[t].asks {
                        continue;
                    }
                    if state[t] == 1 {
                        let p = &parsed[t];
                        self.error(
                            p.key.pos,
                            format!(
                                "step '{}' is part of a loop that never asks anything",
                                p.key.name
                            ),
                        );
                    } else if state[t] == 0 {
                        state[t] = 1;
                        stack.push((t, 0));
                    }
                } else {
                    state[node] = 2;
                }
            }
        }
    }

    fn char_at(&self, pos: Pos) -> Option<char> {
        let line = self
            .source
            .lines()
            .nth(usize::try_from(pos.line).ok()?.checked_sub(1)?)?;
        line.chars()
            .nth(usize::try_from(pos.column).ok()?.checked_sub(1)?)
    }
}

/// Whether a text is a non-empty word of `A-Za-z0-9_-`.
fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Whether a text looks like a language code (`ru`, `en`, `en-GB`, `pt_BR`).
fn is_locale(s: &str) -> bool {
    let mut parts = s.split(['-', '_']);
    let primary = parts.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Parses `30m`, `1h`, `24h`, `2d`, `90s` and sums such as `1h30m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    (digits.is_empty() && total > 0).then(|| Duration::from_secs(total))
}

fn unknown_key_message(key: &str, allowed: &[&str]) -> String {
    match closest(key, allowed) {
        Some(s) => format!("unknown key '{key}'; did you mean '{s}'?"),
        None => format!(
            "unknown key '{key}'; expected one of: {}",
            allowed.join(", ")
        ),
    }
}

fn unknown_step_message(target: &str, names: &[&str]) -> String {
    match closest(target, names) {
        Some(s) => format!("unknown step '{target}'; did you mean '{s}'?"),
        None => format!("unknown step '{target}'"),
    }
}

/// The candidate nearest to `word` by edit distance, when it is close enough to be a typo.
fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: edits plus swaps of neighbours (`nxet` is one from `next`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;

/// A user's text shortened for an error message.
fn cut_for_message(text: &str) -> String {
    let mut out: String = text.chars().take(40).collect();
    if text.chars().count() > 40 {
        out.push('…');
    }
    out
}
