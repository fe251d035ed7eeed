//! The compiled dialogue and the values the engine reads and returns.
//!
//! Everything here is plain data: a [`Script`] is produced once by the compiler from a YAML
//! file, a [`Session`] is a lead's progress through one script version, and
//! [`advance`](super::advance) turns `(script, session, input)` into a [`Transition`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::Temperature;

/// Index of a step inside one compiled script version; stable for that version only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepId(pub u16);

impl StepId {
    /// The step's index into [`Script::steps`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A compiled, validated dialogue.
#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    /// The dialogue's `id`.
    pub id: String,
    /// The `locale` the texts are written in (`ru`, `en`, ...), matched against the user's language.
    pub locale: String,
    /// Deep-link source patterns this dialogue serves; `*` matches any run of characters.
    pub sources: Vec<String>,
    /// Score thresholds for `warm` and `hot`.
    pub thresholds: Thresholds,
    /// Nudges for a lead who stopped answering mid-dialogue, in order.
    pub remind_after: Vec<Duration>,
    /// The first step.
    pub start: StepId,
    /// All steps; [`StepId`] indexes this.
    pub steps: Vec<Step>,
    /// Content hash of the source file (hex, 16 chars): sessions are pinned to it.
    pub version: String,
}

impl Script {
    /// The step behind an id. Ids only come from this script, so the index is in range.
    pub fn step(&self, id: StepId) -> &Step {
        &self.steps[id.index()]
    }

    /// Looks a step up by the name it has in the file.
    pub fn step_by_name(&self, name: &str) -> Option<StepId> {
        self.steps
            .iter()
            .position(|s| s.name == name)
            .and_then(|i| u16::try_from(i).ok())
            .map(StepId)
    }
}

/// Score thresholds; `warm < hot` is guaranteed by the compiler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Score at which a lead becomes warm.
    pub warm: i32,
    /// Score at which a lead becomes hot.
    pub hot: i32,
}

impl Thresholds {
    /// The temperature for a score, or hot when forced by a `hot: true` choice.
    pub fn temperature(&self, score: i32, forced_hot: bool) -> Temperature {
        if forced_hot || score >= self.hot {
            Temperature::Hot
        } else if score >= self.warm {
            Temperature::Warm
        } else {
            Temperature::Cold
        }
    }
}

/// One step of a dialogue.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The step's name in the file, kept for history, statistics and the graph.
    pub name: String,
    /// What the step does.
    pub kind: StepKind,
}

/// What a step does.
#[derive(Clone, Debug, PartialEq)]
pub enum StepKind {
    /// Send a text and go on at once.
    Say {
        text: String,
        set: Vec<(String, Fact)>,
        next: StepId,
    },
    /// Send an optional text and end the dialogue.
    End { text: Option<String> },
    /// Ask a question answered with one of the buttons (or a label typed by hand).
    Choice {
        text: String,
        /// Key the chosen label is saved under (the step name unless `save:` says otherwise).
        save: String,
        choices: Vec<Choice>,
    },
    /// Ask a question answered with typed (or shared) input.
    Input {
        text: String,
        kind: InputKind,
        /// Key the answer is saved under (the step name unless `save:` says otherwise).
        save: String,
        score: i32,
        set: Vec<(String, Fact)>,
        next: StepId,
    },
    /// Pick the next step by the first rule whose condition holds.
    Branch { rules: Vec<Rule> },
}

/// One button of a choice step.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub label: String,
    /// Other answers that pick this choice when typed (any case), trimmed.
    pub also: Vec<String>,
    pub score: i32,
    pub hot: bool,
    pub set: Vec<(String, Fact)>,
    pub next: StepId,
}

/// One rule of a branch step; `condition: None` always matches.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub condition: Option<super::expr::Expr>,
    pub next: StepId,
}

/// The kinds of typed input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    Text,
    Name,
    Phone,
    Email,
    Contact,
    Number,
}

/// A value set by `set:` (e.g. `consent: true`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Fact {
    Bool(bool),
    Int(i64),
    Text(String),
}

/// A stored answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The step that asked.
    pub step: String,
    /// The question as asked.
    pub question: String,
    /// The answer as shown to people (label, normalised phone, trimmed name...).
    pub value: String,
    /// The number, for `input: number`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<f64>,
}

/// Why a lead has its score: one line per answer that earned points or forced hot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreItem {
    /// Step name (or a signal name such as `offer`).
    pub step: String,
    /// The answer or signal that earned it.
    pub answer: String,
    pub points: i32,
    /// True when this answer forced the lead hot.
    #[serde(default)]
    pub hot: bool,
}

/// Where a session is in its script.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", content = "step", rename_all = "snake_case")]
pub enum Position {
    /// The dialogue has not begun.
    NotStarted,
    /// Waiting for an answer to this step.
    Waiting(StepId),
    /// The dialogue ended at this step.
    Ended(StepId),
}

/// A lead's progress through one script version. Serialised as JSON by storage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub position: Position,
    #[serde(default)]
    pub answers: BTreeMap<String, Answer>,
    #[serde(default)]
    pub facts: BTreeMap<String, Fact>,
    #[serde(default)]
    pub score: i32,
    #[serde(default)]
    pub forced_hot: bool,
    #[serde(default)]
    pub breakdown: Vec<ScoreItem>,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            position: Position::NotStarted,
            answers: BTreeMap::new(),
            facts: BTreeMap::new(),
            score: 0,
            forced_hot: false,
            breakdown: Vec::new(),
        }
    }
}

impl Session {
    /// The temperature under a script's thresholds.
    pub fn temperature(&self, thresholds: &Thresholds) -> Temperature {
        thresholds.temperature(self.score, self.forced_hot)
    }

    /// Adds points from outside the dialogue (an offer click, say) with its reason.
    pub fn add_score(&mut self, item: ScoreItem) {
        self.score = self.score.saturating_add(item.points);
        self.forced_hot |= item.hot;
        self.breakdown.push(item);
    }
}

/// Kinds of message that carry no text the engine can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Sticker,
    Photo,
    Voice,
    Video,
    Audio,
    Document,
    Location,
    Other,
}

/// What the prospect did.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// `/start`: begin the dialogue, or re-ask the current question when one is waiting.
    Start,
    /// Start over after the end: score, breakdown and hot flag are reset, answers are kept until
    /// overwritten.
    Restart,
    /// A typed message.
    Text(String),
    /// An inline button press for `step`, choice number `index`.
    Choice { step: StepId, index: u8 },
    /// A shared contact; `own` is true when `contact.user_id` equals the sender.
    Contact { phone: String, own: bool },
    /// A sticker, photo, voice message...
    Media(MediaKind),
}

/// A reference from a button back to the choice it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChoiceRef {
    pub step: StepId,
    pub index: u8,
}

/// The keyboard under a message.
#[derive(Clone, Debug, PartialEq)]
pub enum Keyboard {
    /// No keyboard change.
    None,
    /// Inline buttons, one per choice.
    Choices(Vec<(String, ChoiceRef)>),
    /// A reply keyboard with one "share my number" button.
    RequestContact { label: String },
    /// Remove a reply keyboard shown earlier.
    Remove,
}

/// A message to the prospect. Texts are plain (no parse mode).
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub text: String,
    pub keyboard: Keyboard,
}

/// Something the caller must do or record after a transition.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send this message to the prospect.
    Send(Reply),
    /// An answer was accepted and saved under `key`.
    Answered { key: String, answer: Answer },
    /// A `set:` value was applied (e.g. `consent`, `marketing_consent`).
    Set { key: String, value: Fact },
    /// The session entered this step (for the funnel).
    Entered(StepId),
    /// The lead turned hot in this transition (it was not hot before).
    TurnedHot,
    /// The dialogue ended at this step.
    Ended(StepId),
}

/// How the engine took the input.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The input moved the dialogue on.
    Accepted,
    /// The input was not a valid answer; the question was asked again with a hint.
    Rejected(Rejection),
    /// The dialogue was not waiting for anything (ended or not started); nothing changed.
    Idle,
}

/// Why an input was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    NotAChoice,
    StaleButton,
    InvalidPhone,
    ForeignContact,
    InvalidEmail,
    InvalidName,
    InvalidNumber,
    EmptyText,
    TooLong,
    Unsupported(MediaKind),
}

/// The result of [`advance`](super::advance).
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub session: Session,
    pub effects: Vec<Effect>,
    pub outcome: Outcome,
}
