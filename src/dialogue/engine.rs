//! `advance()`: one input in, the next session and what to do out. Pure and total.

use super::expr::{Value, Var};
use super::texts::Texts;
use super::{
    Answer, Choice, ChoiceRef, Effect, Fact, Input, InputKind, Keyboard, Outcome, Position,
    Rejection, Reply, ScoreItem, Script, Session, StepId, StepKind, Transition,
};
use crate::domain::{Email, LeadName, Phone, Temperature, only, parse_number, words};

/// The longest message the engine takes as an answer (Telegram's own limit).
const MAX_ANSWER_CHARS: usize = 4096;

/// Moves a session on by one input. Never panics, whatever the input or the session's position.
pub fn advance(script: &Script, session: &Session, input: Input) -> Transition {
    let mut run = Run {
        script,
        texts: Texts::for_locale(&script.locale),
        session: session.clone(),
        effects: Vec::new(),
        was_hot: session.temperature(&script.thresholds) == Temperature::Hot,
        remove_keyboard: false,
    };
    let position = run.valid_position();
    let outcome = match (input, position) {
        (Input::Start, Position::Waiting(id)) => {
            run.ask(id);
            Outcome::Accepted
        }
        (Input::Start, _) => {
            run.enter(script.start);
            Outcome::Accepted
        }
        (Input::Restart, _) => {
            run.session.score = 0;
            run.session.breakdown.clear();
            run.session.forced_hot = false;
            run.was_hot = false;
            run.enter(script.start);
            Outcome::Accepted
        }
        (input, Position::Waiting(id)) => run.answer(id, input),
        (_, _) => Outcome::Idle,
    };
    Transition {
        session: run.session,
        effects: run.effects,
        outcome,
    }
}

struct Run<'a> {
    script: &'a Script,
    texts: &'static Texts,
    session: Session,
    effects: Vec<Effect>,
    was_hot: bool,
    /// A "share my number" keyboard is showing and the next message should take it away.
    remove_keyboard: bool,
}

impl Run<'_> {
    /// The session's position, or `NotStarted` when it does not fit this script (a stored session
    /// from elsewhere must not make the engine index out of range).
    fn valid_position(&mut self) -> Position {
        let steps = &self.script.steps;
        let fits = match self.session.position {
            Position::NotStarted => true,
            Position::Ended(id) => id.index() < steps.len(),
            Position::Waiting(id) => steps.get(id.index()).is_some_and(|s| {
                matches!(s.kind, StepKind::Choice { .. } | StepKind::Input { .. })
            }),
        };
        if !fits {
            self.session.position = Position::NotStarted;
        }
        self.session.position
    }

    fn send(&mut self, text: String, keyboard: Keyboard) {
        let keyboard = if self.remove_keyboard {
            match keyboard {
                Keyboard::None => {
                    self.remove_keyboard = false;
                    Keyboard::Remove
                }
                Keyboard::Choices(_) => {
                    // Inline buttons and a keyboard removal cannot share one message.
                    self.remove_keyboard = false;
                    self.effects.push(Effect::Send(Reply {
                        text: self.texts.phone_saved.to_owned(),
                        keyboard: Keyboard::Remove,
                    }));
                    keyboard
                }
                other => {
                    self.remove_keyboard = false;
                    other
                }
            }
        } else {
            keyboard
        };
        self.effects.push(Effect::Send(Reply { text, keyboard }));
    }

    /// The question of a waiting step and its keyboard.
    fn question(&self, id: StepId) -> Option<(String, Keyboard)> {
        match &self.script.steps.get(id.index())?.kind {
            StepKind::Choice { text, choices, .. } => {
                let buttons = choices
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| {
                        let index = u8::try_from(i).ok()?;
                        Some((c.label.clone(), ChoiceRef { step: id, index }))
                    })
                    .collect();
                Some((text.clone(), Keyboard::Choices(buttons)))
            }
            StepKind::Input { text, kind, .. } => {
                let keyboard = match kind {
                    InputKind::Phone | InputKind::Contact => Keyboard::RequestContact {
                        label: self.texts.share_number.to_owned(),
                    },
                    _ => Keyboard::None,
                };
                Some((text.clone(), keyboard))
            }
            _ => None,
        }
    }

    /// Sends the question of a waiting step (again).
    fn ask(&mut self, id: StepId) {
        if let Some((text, keyboard)) = self.question(id) {
            self.send(text, keyboard);
        }
    }

    /// Enters `id` and runs on through say and branch steps until a question or the end.
    fn enter(&mut self, mut id: StepId) {
        // The checker refuses loops that ask nothing; the cap keeps an unchecked script finite.
        let cap = self.script.steps.len().saturating_add(1);
        for _ in 0..cap {
            let Some(step) = self.script.steps.get(id.index()) else {
                break;
            };
            self.effects.push(Effect::Entered(id));
            match &step.kind {
                StepKind::Say { text, set, next } => {
                    self.send(text.clone(), Keyboard::None);
                    self.apply_set(set);
                    id = *next;
                }
                StepKind::Branch { rules } => {
                    let chosen = rules
                        .iter()
                        .find(|r| {
                            r.condition
                                .as_ref()
                                .is_none_or(|c| c.eval(&|v| self.lookup(v)))
                        })
                        .map(|r| r.next);
                    match chosen {
                        Some(next) => id = next,
                        None => return self.end(id),
                    }
                }
                StepKind::End { text } => {
                    if let Some(text) = text {
                        self.send(text.clone(), Keyboard::None);
                    }
                    return self.end(id);
                }
                StepKind::Choice { .. } | StepKind::Input { .. } => {
                    self.ask(id);
                    self.session.position = Position::Waiting(id);
                    return;
                }
            }
        }
        self.end(id);
    }

    fn end(&mut self, id: StepId) {
        let id = if id.index() < self.script.steps.len() {
            id
        } else {
            self.script.start
        };
        self.effects.push(Effect::Ended(id));
        self.session.position = Position::Ended(id);
    }

    fn apply_set(&mut self, set: &[(String, Fact)]) {
        for (key, value) in set {
            self.session.facts.insert(key.clone(), value.clone());
            self.effects.push(Effect::Set {
                key: key.clone(),
                value: value.clone(),
            });
        }
    }

    fn lookup(&self, var: &Var) -> Value {
        match var {
            Var::Score => Value::Number(f64::from(self.session.score)),
            Var::Temperature => Value::Text(
                self.session
                    .temperature(&self.script.thresholds)
                    .as_str()
                    .to_owned(),
            ),
            Var::Answer(key) => match self.session.answers.get(key) {
                Some(Answer {
                    number: Some(n), ..
                }) => Value::Number(*n),
                Some(answer) => Value::Text(answer.value.clone()),
                None => Value::Missing,
            },
            Var::Fact(key) => match self.session.facts.get(key) {
                Some(Fact::Bool(b)) => Value::Bool(*b),
                Some(Fact::Int(i)) => Value::Number(*i as f64),
                Some(Fact::Text(t)) => Value::Text(t.clone()),
                None => Value::Missing,
            },
        }
    }

    /// Takes an answer to the waiting step `id`.
    fn answer(&mut self, id: StepId, input: Input) -> Outcome {
        let script = self.script;
        let step = &script.steps[id.index()];
        let result = match &step.kind {
            StepKind::Choice { choices, .. } => match input {
                Input::Choice { step, index } if step == id => choices
                    .get(usize::from(index))
                    .map(|c| (c.label.clone(), None, c.score, c.hot, c.set.clone(), c.next))
                    .ok_or(Rejection::StaleButton),
                Input::Choice { .. } => Err(Rejection::StaleButton),
                Input::Text(text) if text.chars().count() > MAX_ANSWER_CHARS => {
                    Err(Rejection::TooLong)
                }
                Input::Text(text) => typed_choice(choices, &text)
                    .map(|c| (c.label.clone(), None, c.score, c.hot, c.set.clone(), c.next))
                    .ok_or(Rejection::NotAChoice),
                Input::Contact { .. } => Err(Rejection::NotAChoice),
                Input::Media(kind) => Err(Rejection::Unsupported(kind)),
                Input::Start | Input::Restart => Err(Rejection::NotAChoice),
            },
            StepKind::Input {
                kind,
                score,
                set,
                next,
                ..
            } => validate(*kind, input)
                .map(|(value, number)| (value, number, *score, false, set.clone(), *next)),
            _ => return Outcome::Idle,
        };
        match result {
            Ok((value, number, points, hot, set, next)) => {
                self.accept(id, value, number, points, hot, &set);
                if matches!(
                    step.kind,
                    StepKind::Input {
                        kind: InputKind::Phone | InputKind::Contact,
                        ..
                    }
                ) {
                    self.remove_keyboard = true;
                }
                self.enter(next);
                Outcome::Accepted
            }
            Err(rejection) => {
                self.reject(id, &rejection);
                Outcome::Rejected(rejection)
            }
        }
    }

    fn accept(
        &mut self,
        id: StepId,
        value: String,
        number: Option<f64>,
        points: i32,
        hot: bool,
        set: &[(String, Fact)],
    ) {
        let script = self.script;
        let step = &script.steps[id.index()];
        let (key, question) = match &step.kind {
            StepKind::Choice { save, text, .. } | StepKind::Input { save, text, .. } => {
                (save.clone(), text.clone())
            }
            _ => (step.name.clone(), String::new()),
        };
        let answer = Answer {
            step: step.name.clone(),
            question,
            value: value.clone(),
            number,
        };
        self.session.answers.insert(key.clone(), answer.clone());
        self.effects.push(Effect::Answered { key, answer });
        if points != 0 || hot {
            self.session.add_score(ScoreItem {
                step: step.name.clone(),
                answer: value,
                points,
                hot,
            });
        }
        self.apply_set(set);
        let hot_now = self.session.temperature(&self.script.thresholds) == Temperature::Hot;
        if hot_now && !self.was_hot {
            self.was_hot = true;
            self.effects.push(Effect::TurnedHot);
        }
    }

    /// Explains why an input was refused and asks the same question again.
    fn reject(&mut self, id: StepId, rejection: &Rejection) {
        let hint = self.texts.hint(rejection);
        let Some((question, keyboard)) = self.question(id) else {
            return;
        };
        let together = format!("{hint}\n\n{question}");
        if together.chars().count() <= MAX_ANSWER_CHARS {
            self.send(together, keyboard);
        } else {
            self.send(hint, Keyboard::None);
            self.send(question, keyboard);
        }
    }
}

/// Whether `text`, typed now, picks a button of the question the dialogue waits on: there a word
/// such as «Стоп» is an answer the dialogue file gave, not a request to the bot.
pub fn picks_a_choice(script: &Script, session: &Session, text: &str) -> bool {
    let Position::Waiting(id) = session.position else {
        return false;
    };
    match script.steps.get(id.index()).map(|s| &s.kind) {
        Some(StepKind::Choice { choices, .. }) => typed_choice(choices, text).is_some(),
        _ => false,
    }
}

/// The choice a typed answer names: its label or one of its `also` answers in any case, or,
/// ignoring case, punctuation and `ё`/`е`, their words, or the first words of exactly one label
/// (`да` for "Да, присылайте", `сравниваю` for "Сравниваю варианты"). A word two labels start with
/// names neither.
fn typed_choice<'a>(choices: &'a [Choice], text: &str) -> Option<&'a Choice> {
    let typed = text.trim().to_lowercase();
    if let Some(c) = choices.iter().find(|c| {
        c.label.to_lowercase() == typed || c.also.iter().any(|a| a.to_lowercase() == typed)
    }) {
        return Some(c);
    }
    let typed = words(&typed);
    if typed.is_empty() {
        return None;
    }
    let labels: Vec<(&Choice, Vec<String>)> =
        choices.iter().map(|c| (c, words(&c.label))).collect();
    let equal = labels
        .iter()
        .filter(|(c, w)| *w == typed || c.also.iter().any(|a| words(a) == typed));
    only(equal)
        .or_else(|| only(labels.iter().filter(|(_, w)| w.starts_with(&typed))))
        .map(|(c, _)| *c)
}

/// Checks typed or shared input against an input kind; the value as shown and the number.
fn validate(kind: InputKind, input: Input) -> Result<(String, Option<f64>), Rejection> {
    match input {
        Input::Text(text) if text.chars().count() > MAX_ANSWER_CHARS => Err(Rejection::TooLong),
        Input::Text(text) => match kind {
            InputKind::Text => {
                let trimmed = text.trim();
                if trimmed.is_empty() {
                    Err(Rejection::EmptyText)
                } else {
                    Ok((trimmed.to_owned(), None))
                }
            }
            InputKind::Name => LeadName::parse(&text)
                .map(|n| (n.as_str().to_owned(), None))
                .map_err(|_| Rejection::InvalidName),
            InputKind::Phone | InputKind::Contact => Phone::parse(&text)
                .ok()
                .or_else(|| Phone::find_in(&text))
                .map(|p| (p.as_str().to_owned(), None))
                .ok_or(Rejection::InvalidPhone),
            InputKind::Email => Email::parse(&text)
                .ok()
                .or_else(|| Email::find_in(&text))
                .map(|e| (e.as_str().to_owned(), None))
                .ok_or(Rejection::InvalidEmail),
            InputKind::Number => parse_number(&text)
                .map(|n| (n.to_string(), Some(n)))
                .map_err(|_| Rejection::InvalidNumber),
        },
        Input::Contact { phone, own } => match kind {
            InputKind::Phone | InputKind::Contact if !own => Err(Rejection::ForeignContact),
            InputKind::Phone | InputKind::Contact => Phone::parse(&phone)
                .map(|p| (p.as_str().to_owned(), None))
                .map_err(|_| Rejection::InvalidPhone),
            _ => Err(Rejection::Unsupported(super::MediaKind::Other)),
        },
        Input::Choice { .. } => Err(Rejection::StaleButton),
        Input::Media(media) => Err(Rejection::Unsupported(media)),
        Input::Start | Input::Restart => Err(Rejection::EmptyText),
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
