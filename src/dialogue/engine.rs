//! `advance()`: the pure heart of leadbot. Given a script, a session and what the prospect did,
//! it decides everything — validation, hints, score, temperature, the next step — and returns
//! the new session with the effects the caller must carry out.

use super::expr::{Value, Var};
use super::texts;
use super::{
    Answer, ChoiceRef, Effect, Fact, Input, InputKind, Keyboard, Outcome, Position, Rejection,
    Reply, ScoreItem, Script, Session, StepId, StepKind, Transition,
};
use crate::domain::{Email, LeadName, Phone, Temperature, parse_number};

/// Steps entered in one transition at most; the checker rejects loops without an exit, this
/// keeps the engine total even for a script that slipped past it.
const MAX_HOPS: usize = 256;
/// Telegram's message limit, used for free-text answers.
const MAX_TEXT: usize = 4096;

/// Advances a session by one input. Pure and total: never panics.
pub fn advance(script: &Script, session: &Session, input: Input) -> Transition {
    let mut s = session.clone();
    let valid = |id: StepId| id.index() < script.steps.len();
    match s.position {
        Position::Waiting(id) | Position::Ended(id) if !valid(id) => {
            s.position = Position::NotStarted
        }
        _ => {}
    }
    if !valid(script.start) {
        return Transition {
            session: s,
            effects: Vec::new(),
            outcome: Outcome::Idle,
        };
    }
    let mut effects = Vec::new();
    let outcome = match (input, s.position) {
        (Input::Restart, _) | (Input::Start, Position::NotStarted | Position::Ended(_)) => {
            s.score = 0;
            s.breakdown.clear();
            s.forced_hot = false;
            let before = s.temperature(&script.thresholds);
            enter(script, &mut s, script.start, &mut effects, false);
            turned_hot(script, before, &s, &mut effects);
            Outcome::Accepted
        }
        (Input::Start, Position::Waiting(id)) => {
            ask(script, id, &mut effects);
            Outcome::Accepted
        }
        (input, Position::Waiting(id)) => {
            let before = s.temperature(&script.thresholds);
            let outcome = answer(script, &mut s, id, input, &mut effects);
            turned_hot(script, before, &s, &mut effects);
            outcome
        }
        (_, Position::NotStarted | Position::Ended(_)) => Outcome::Idle,
    };
    Transition {
        session: s,
        effects,
        outcome,
    }
}

fn turned_hot(script: &Script, before: Temperature, s: &Session, effects: &mut Vec<Effect>) {
    if before != Temperature::Hot && s.temperature(&script.thresholds) == Temperature::Hot {
        // Keep TurnedHot before Ended so callers see the lead hot when the dialogue closes.
        let at = effects
            .iter()
            .position(|e| matches!(e, Effect::Ended(_)))
            .unwrap_or(effects.len());
        effects.insert(at, Effect::TurnedHot);
    }
}

/// Sends the question of a waiting step.
fn ask(script: &Script, id: StepId, effects: &mut Vec<Effect>) {
    match &script.step(id).kind {
        StepKind::Choice { text, choices, .. } => {
            let buttons = choices
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    u8::try_from(i)
                        .ok()
                        .map(|index| (c.label.clone(), ChoiceRef { step: id, index }))
                })
                .collect();
            effects.push(Effect::Send(Reply {
                text: text.clone(),
                keyboard: Keyboard::Choices(buttons),
            }));
        }
        StepKind::Input { text, kind, .. } => {
            let keyboard = match kind {
                InputKind::Phone | InputKind::Contact => Keyboard::RequestContact {
                    label: texts::share_phone(&script.locale).to_owned(),
                },
                _ => Keyboard::None,
            };
            effects.push(Effect::Send(Reply {
                text: text.clone(),
                keyboard,
            }));
        }
        StepKind::Say { text, .. } => effects.push(Effect::Send(Reply {
            text: text.clone(),
            keyboard: Keyboard::None,
        })),
        StepKind::End { text: Some(text) } => effects.push(Effect::Send(Reply {
            text: text.clone(),
            keyboard: Keyboard::None,
        })),
        StepKind::End { text: None } | StepKind::Branch { .. } => {}
    }
}

/// Enters a step and runs on through says and branches until a question or an end.
fn enter(
    script: &Script,
    s: &mut Session,
    mut id: StepId,
    effects: &mut Vec<Effect>,
    mut remove_keyboard: bool,
) {
    for _ in 0..MAX_HOPS {
        effects.push(Effect::Entered(id));
        match &script.step(id).kind {
            StepKind::Say { text, set, next } => {
                let keyboard = if std::mem::take(&mut remove_keyboard) {
                    Keyboard::Remove
                } else {
                    Keyboard::None
                };
                effects.push(Effect::Send(Reply {
                    text: text.clone(),
                    keyboard,
                }));
                apply_set(s, set, effects);
                id = *next;
            }
            StepKind::End { text } => {
                if let Some(text) = text {
                    let keyboard = if std::mem::take(&mut remove_keyboard) {
                        Keyboard::Remove
                    } else {
                        Keyboard::None
                    };
                    effects.push(Effect::Send(Reply {
                        text: text.clone(),
                        keyboard,
                    }));
                }
                s.position = Position::Ended(id);
                effects.push(Effect::Ended(id));
                return;
            }
            StepKind::Choice { .. } | StepKind::Input { .. } => {
                if remove_keyboard {
                    // An inline keyboard cannot also remove the reply keyboard; say thanks with it.
                    let thanks = if texts::is_ru(&script.locale) {
                        "Спасибо!"
                    } else {
                        "Thank you!"
                    };
                    effects.push(Effect::Send(Reply {
                        text: thanks.to_owned(),
                        keyboard: Keyboard::Remove,
                    }));
                }
                ask(script, id, effects);
                s.position = Position::Waiting(id);
                return;
            }
            StepKind::Branch { rules } => {
                let lookup = |v: &Var| lookup(script, s, v);
                let next = rules
                    .iter()
                    .find(|r| r.condition.as_ref().is_none_or(|c| c.eval(&lookup)))
                    .map(|r| r.next);
                match next {
                    Some(next) => id = next,
                    None => {
                        s.position = Position::Ended(id);
                        effects.push(Effect::Ended(id));
                        return;
                    }
                }
            }
        }
    }
    s.position = Position::Ended(id);
    effects.push(Effect::Ended(id));
}

fn lookup(script: &Script, s: &Session, v: &Var) -> Value {
    match v {
        Var::Score => Value::Number(f64::from(s.score)),
        Var::Temperature => Value::Text(s.temperature(&script.thresholds).as_str().to_owned()),
        Var::Answer(key) => match s.answers.get(key) {
            Some(Answer {
                number: Some(n), ..
            }) => Value::Number(*n),
            Some(a) => Value::Text(a.value.clone()),
            None => Value::Missing,
        },
        Var::Fact(key) => match s.facts.get(key) {
            Some(Fact::Bool(b)) => Value::Bool(*b),
            Some(Fact::Int(i)) => Value::Number(*i as f64),
            Some(Fact::Text(t)) => Value::Text(t.clone()),
            None => Value::Missing,
        },
    }
}

fn apply_set(s: &mut Session, set: &[(String, Fact)], effects: &mut Vec<Effect>) {
    for (key, value) in set {
        s.facts.insert(key.clone(), value.clone());
        effects.push(Effect::Set {
            key: key.clone(),
            value: value.clone(),
        });
    }
}

fn reject(script: &Script, id: StepId, why: Rejection, effects: &mut Vec<Effect>) -> Outcome {
    effects.push(Effect::Send(Reply {
        text: texts::hint(&script.locale, &why),
        keyboard: Keyboard::None,
    }));
    ask(script, id, effects);
    Outcome::Rejected(why)
}

fn answer(
    script: &Script,
    s: &mut Session,
    id: StepId,
    input: Input,
    effects: &mut Vec<Effect>,
) -> Outcome {
    let step = script.step(id);
    match &step.kind {
        StepKind::Choice {
            text,
            save,
            choices,
        } => {
            let index = match input {
                Input::Choice { step, index }
                    if step == id && usize::from(index) < choices.len() =>
                {
                    usize::from(index)
                }
                Input::Choice { .. } => return reject(script, id, Rejection::StaleButton, effects),
                Input::Text(t) if t.chars().count() > MAX_TEXT => {
                    return reject(script, id, Rejection::TooLong, effects);
                }
                Input::Text(t) => {
                    let typed = t.trim().to_lowercase();
                    match choices
                        .iter()
                        .position(|c| c.label.trim().to_lowercase() == typed)
                    {
                        Some(i) => i,
                        None => return reject(script, id, Rejection::NotAChoice, effects),
                    }
                }
                Input::Media(kind) => {
                    return reject(script, id, Rejection::Unsupported(kind), effects);
                }
                Input::Contact { .. } | Input::Start | Input::Restart => {
                    return reject(script, id, Rejection::NotAChoice, effects);
                }
            };
            let choice = &choices[index];
            let answer = Answer {
                step: step.name.clone(),
                question: text.clone(),
                value: choice.label.clone(),
                number: None,
            };
            s.answers.insert(save.clone(), answer.clone());
            effects.push(Effect::Answered {
                key: save.clone(),
                answer,
            });
            if choice.score != 0 || choice.hot {
                s.add_score(ScoreItem {
                    step: step.name.clone(),
                    answer: choice.label.clone(),
                    points: choice.score,
                    hot: choice.hot,
                });
            }
            apply_set(s, &choice.set, effects);
            enter(script, s, choice.next, effects, false);
            Outcome::Accepted
        }
        StepKind::Input {
            text,
            kind,
            save,
            score,
            set,
            next,
        } => {
            let parsed = match input {
                Input::Text(t) if t.chars().count() > MAX_TEXT => Err(Rejection::TooLong),
                Input::Text(t) => parse_input(*kind, &t),
                Input::Contact { phone, own } => match kind {
                    InputKind::Phone | InputKind::Contact if !own => Err(Rejection::ForeignContact),
                    InputKind::Phone | InputKind::Contact => parse_input(*kind, &phone),
                    _ => Err(Rejection::EmptyText),
                },
                Input::Media(k) => Err(Rejection::Unsupported(k)),
                Input::Choice { .. } => Err(Rejection::StaleButton),
                Input::Start | Input::Restart => Err(Rejection::EmptyText),
            };
            let (value, number) = match parsed {
                Ok(v) => v,
                Err(why) => return reject(script, id, why, effects),
            };
            let answer = Answer {
                step: step.name.clone(),
                question: text.clone(),
                value,
                number,
            };
            s.answers.insert(save.clone(), answer.clone());
            effects.push(Effect::Answered {
                key: save.clone(),
                answer,
            });
            if *score != 0 {
                let given = if texts::is_ru(&script.locale) {
                    "указан"
                } else {
                    "provided"
                };
                s.add_score(ScoreItem {
                    step: step.name.clone(),
                    answer: given.to_owned(),
                    points: *score,
                    hot: false,
                });
            }
            apply_set(s, set, effects);
            let remove = matches!(kind, InputKind::Phone | InputKind::Contact);
            enter(script, s, *next, effects, remove);
            Outcome::Accepted
        }
        // Only choice and input steps wait; anything else means the session is inconsistent.
        _ => {
            enter(script, s, id, effects, false);
            Outcome::Accepted
        }
    }
}

fn parse_input(kind: InputKind, text: &str) -> Result<(String, Option<f64>), Rejection> {
    match kind {
        InputKind::Text => {
            let t = text.trim();
            if t.is_empty() {
                Err(Rejection::EmptyText)
            } else {
                Ok((t.to_owned(), None))
            }
        }
        InputKind::Name => LeadName::parse(text)
            .map(|n| (n.as_str().to_owned(), None))
            .map_err(|_| Rejection::InvalidName),
        InputKind::Phone | InputKind::Contact => Phone::parse(text)
            .map(|p| (p.as_str().to_owned(), None))
            .map_err(|_| Rejection::InvalidPhone),
        InputKind::Email => Email::parse(text)
            .map(|e| (e.as_str().to_owned(), None))
            .map_err(|_| Rejection::InvalidEmail),
        InputKind::Number => parse_number(text)
            .map(|n| (text.trim().to_owned(), Some(n)))
            .map_err(|_| Rejection::InvalidNumber),
    }
}
