//! Tests of `advance()` on the shipped dialogues, plus property tests.

use proptest::prelude::*;

use super::super::{MediaKind, compile};
use super::*;

const RU: &str = include_str!("../../dialogues/default.ru.yaml");
const EN: &str = include_str!("../../dialogues/default.en.yaml");

fn ru() -> Script {
    compile("default.ru.yaml", RU).unwrap().script
}

fn en() -> Script {
    compile("default.en.yaml", EN).unwrap().script
}

fn id(script: &Script, name: &str) -> StepId {
    script.step_by_name(name).unwrap()
}

fn sends(t: &Transition) -> Vec<&Reply> {
    t.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn texts(t: &Transition) -> Vec<&str> {
    sends(t).iter().map(|r| r.text.as_str()).collect()
}

/// Feeds inputs one by one and returns every transition.
fn play(script: &Script, inputs: Vec<Input>) -> (Session, Vec<Transition>) {
    let mut session = Session::default();
    let mut out = Vec::new();
    for input in inputs {
        let t = advance(script, &session, input);
        session = t.session.clone();
        out.push(t);
    }
    (session, out)
}

fn text(s: &str) -> Input {
    Input::Text(s.to_owned())
}

fn button(script: &Script, step: &str, index: u8) -> Input {
    Input::Choice {
        step: id(script, step),
        index,
    }
}

/// Start, consent and name, then `input` at the phone question: the session after it, and what
/// that input did.
fn at_phone(script: &Script, input: Input) -> (Session, Transition) {
    let (session, mut ts) = play(
        script,
        vec![
            Input::Start,
            button(script, "consent", 0),
            text("Анна"),
            input,
        ],
    );
    let last = ts.pop().expect("four transitions");
    (session, last)
}

/// Start, consent, name and phone: the session waits at `need`.
fn up_to_need(script: &Script) -> Session {
    let (session, _) = at_phone(script, text("8 912 345-67-89"));
    assert_eq!(session.position, Position::Waiting(id(script, "need")));
    session
}

#[test]
fn start_greets_and_asks_for_consent_with_buttons() {
    let s = ru();
    let t = advance(&s, &Session::default(), Input::Start);
    assert_eq!(t.outcome, Outcome::Accepted);
    assert_eq!(t.session.position, Position::Waiting(id(&s, "consent")));
    let replies = sends(&t);
    assert!(replies[0].text.starts_with("Здравствуйте!"));
    assert_eq!(replies[0].keyboard, Keyboard::None);
    match &replies[1].keyboard {
        Keyboard::Choices(buttons) => {
            assert_eq!(buttons.len(), 2);
            assert_eq!(buttons[0].0, "Согласен");
            assert_eq!(
                buttons[1].1,
                ChoiceRef {
                    step: id(&s, "consent"),
                    index: 1
                }
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        t.effects
            .iter()
            .filter(|e| matches!(e, Effect::Entered(_)))
            .count(),
        2,
        "greet and consent are both entered"
    );
}

#[test]
fn start_while_waiting_resends_the_question_and_keeps_answers() {
    let s = ru();
    let session = up_to_need(&s);
    let t = advance(&s, &session, Input::Start);
    assert_eq!(t.session, session);
    assert_eq!(texts(&t), vec!["Что вам сейчас ближе?"]);
}

#[test]
fn pressing_a_button_saves_the_label_and_applies_set() {
    let s = ru();
    let (session, ts) = play(&s, vec![Input::Start, button(&s, "consent", 0)]);
    assert_eq!(session.answers["consent"].value, "Согласен");
    assert_eq!(session.facts["consent"], Fact::Bool(true));
    assert!(ts[1].effects.contains(&Effect::Set {
        key: "consent".into(),
        value: Fact::Bool(true)
    }));
    assert_eq!(session.position, Position::Waiting(id(&s, "name")));
}

#[test]
fn a_label_typed_by_hand_selects_the_choice_case_insensitively() {
    let s = ru();
    let (session, ts) = play(&s, vec![Input::Start, text("  согласен ")]);
    assert_eq!(ts[1].outcome, Outcome::Accepted);
    assert_eq!(session.answers["consent"].value, "Согласен");
}

#[test]
fn the_first_words_of_one_label_select_it_and_words_two_labels_share_do_not() {
    let s = ru();
    let at_need = up_to_need(&s);
    let answer = |typed: &str| {
        let t = advance(&s, &at_need, text(typed));
        (
            t.outcome,
            t.session.answers.get("need").map(|a| a.value.clone()),
        )
    };
    let chosen = |label: &str| (Outcome::Accepted, Some(label.to_owned()));
    assert_eq!(answer("сравниваю"), chosen("Сравниваю варианты"));
    assert_eq!(answer("Сравниваю варианты!"), chosen("Сравниваю варианты"));
    assert_eq!(
        answer("готов купить нужен счет"),
        chosen("Готов купить, нужен счёт")
    );
    assert_eq!(answer("ГОТОВ"), chosen("Готов купить, нужен счёт"));
    assert!(at_need.score < advance(&s, &at_need, text("сравниваю")).session.score);
    for not_a_choice in ["варианты", "сравниваю цены", "купить", "👍", "...", ""]
    {
        assert_eq!(
            answer(not_a_choice),
            (Outcome::Rejected(Rejection::NotAChoice), None),
            "{not_a_choice:?}"
        );
    }
    // "В этом месяце" and "В ближайшие 3 месяца" both start with "в".
    let at_timing = advance(&s, &at_need, text("сравниваю")).session;
    assert_eq!(at_timing.position, Position::Waiting(id(&s, "timing")));
    assert_eq!(
        advance(&s, &at_timing, text("в")).outcome,
        Outcome::Rejected(Rejection::NotAChoice)
    );
    assert_eq!(
        advance(&s, &at_timing, text("в этом")).outcome,
        Outcome::Accepted
    );
    // "Согласен" and "Не согласен": the first is the whole of one label, the second starts with "не".
    let (session, ts) = play(&s, vec![Input::Start, text("не")]);
    assert_eq!(ts[1].outcome, Outcome::Accepted);
    assert_eq!(session.answers["consent"].value, "Не согласен");
}

#[test]
fn an_answer_listed_in_also_picks_its_button_and_saves_the_label() {
    let s = ru();
    for typed in ["согласна", "Да!", "ок"] {
        let (session, ts) = play(&s, vec![Input::Start, text(typed)]);
        assert_eq!(ts[1].outcome, Outcome::Accepted, "{typed}");
        assert_eq!(session.answers["consent"].value, "Согласен", "{typed}");
        assert_eq!(
            session.position,
            Position::Waiting(id(&s, "name")),
            "{typed}"
        );
    }
    let (session, _) = play(&s, vec![Input::Start, text("Не согласна")]);
    assert_eq!(session.answers["consent"].value, "Не согласен");
    let e = en();
    let (session, _) = play(&e, vec![Input::Start, text("yes")]);
    assert_eq!(session.answers["consent"].value, "I agree");
    let (session, _) = play(&e, vec![Input::Start, text("No.")]);
    assert_eq!(session.answers["consent"].value, "I don't agree");
}

#[test]
fn only_a_button_of_the_waiting_question_counts_as_picked() {
    let s = ru();
    let at_need = up_to_need(&s);
    assert!(picks_a_choice(&s, &at_need, "сравниваю"));
    assert!(!picks_a_choice(&s, &at_need, "стоп"));
    let (at_name, _) = play(&s, vec![Input::Start, button(&s, "consent", 0)]);
    assert!(
        !picks_a_choice(&s, &at_name, "Согласен"),
        "the name question has no buttons"
    );
    assert!(
        !picks_a_choice(&s, &Session::default(), "Согласен"),
        "nothing asked yet"
    );
    let yaml = RU.replacen("label: \"Не согласен\"", "label: \"Стоп\"", 1);
    assert_ne!(yaml, RU, "the consent step has a «Не согласен» button");
    let s = compile("stop.ru.yaml", &yaml).unwrap().script;
    let (at_consent, _) = play(&s, vec![Input::Start]);
    assert!(picks_a_choice(&s, &at_consent, "стоп!"));
}

#[test]
fn free_text_at_a_choice_is_rejected_with_a_hint_and_the_same_question() {
    let s = ru();
    let (session, ts) = play(&s, vec![Input::Start, text("а что это?")]);
    assert_eq!(ts[1].outcome, Outcome::Rejected(Rejection::NotAChoice));
    assert_eq!(session.position, Position::Waiting(id(&s, "consent")));
    let reply = sends(&ts[1])[0];
    assert!(
        reply
            .text
            .starts_with("Пожалуйста, выберите вариант кнопкой ниже.")
    );
    assert!(
        reply
            .text
            .ends_with("согласие на обработку персональных данных.")
    );
    assert!(matches!(reply.keyboard, Keyboard::Choices(_)));
}

#[test]
fn a_button_of_an_earlier_step_is_stale() {
    let s = ru();
    let session = up_to_need(&s);
    let t = advance(&s, &session, button(&s, "consent", 1));
    assert_eq!(t.outcome, Outcome::Rejected(Rejection::StaleButton));
    assert_eq!(t.session.position, session.position);
    assert_eq!(t.session.answers, session.answers);
}

#[test]
fn an_out_of_range_button_index_is_stale_not_a_panic() {
    let s = ru();
    let (_, ts) = play(&s, vec![Input::Start, button(&s, "consent", 200)]);
    assert_eq!(ts[1].outcome, Outcome::Rejected(Rejection::StaleButton));
}

#[test]
fn the_phone_step_offers_a_share_my_number_button() {
    let s = ru();
    let (_, ts) = play(
        &s,
        vec![Input::Start, button(&s, "consent", 0), text("Анна")],
    );
    let reply = sends(&ts[2])[0];
    assert_eq!(
        reply.keyboard,
        Keyboard::RequestContact {
            label: "📱 Отправить номер".into()
        }
    );
    let (_, ts) = play(&en(), vec![Input::Start, text("I agree"), text("Ann")]);
    assert_eq!(
        sends(&ts[2])[0].keyboard,
        Keyboard::RequestContact {
            label: "📱 Share my number".into()
        }
    );
}

#[test]
fn a_typed_russian_phone_is_normalised_and_scored() {
    let s = ru();
    let session = up_to_need(&s);
    assert_eq!(session.answers["phone"].value, "+79123456789");
    assert_eq!(session.score, 10);
    assert_eq!(
        session.breakdown,
        vec![ScoreItem {
            step: "phone".into(),
            answer: "+79123456789".into(),
            points: 10,
            hot: false
        }]
    );
}

#[test]
fn a_phone_typed_inside_a_sentence_is_taken_and_two_numbers_are_asked_again() {
    let s = ru();
    let typed = |typed: &str| {
        let (session, t) = at_phone(&s, text(typed));
        (
            t.outcome,
            session.answers.get("phone").map(|a| a.value.clone()),
        )
    };
    assert_eq!(
        typed("мой номер 8 912 345-67-89, звоните после 18"),
        (Outcome::Accepted, Some("+79123456789".to_owned()))
    );
    assert_eq!(
        typed("8 912 345 67 89 или 8 999 111 22 33"),
        (Outcome::Rejected(Rejection::InvalidPhone), None)
    );
}

#[test]
fn an_address_typed_inside_a_sentence_is_taken() {
    let yaml = r#"
id: mail
locale: en
sources: ["*"]
start: email
steps:
  email:
    ask: "Your e-mail?"
    input: email
    next: done
  done: { say: "Thanks", end: true }
"#;
    let s = compile("mail.yaml", yaml).unwrap().script;
    let (session, ts) = play(
        &s,
        vec![Input::Start, text("mine is Anna@Example.com, thanks")],
    );
    assert_eq!(ts[1].outcome, Outcome::Accepted);
    assert_eq!(session.answers["email"].value, "Anna@example.com");
    let (_, ts) = play(
        &s,
        vec![Input::Start, text("a@example.com or b@example.com")],
    );
    assert_eq!(ts[1].outcome, Outcome::Rejected(Rejection::InvalidEmail));
}

#[test]
fn an_invalid_phone_is_rejected_and_asked_again_with_the_contact_button() {
    let s = ru();
    let (session, t) = at_phone(&s, text("позвоните мне"));
    assert_eq!(t.outcome, Outcome::Rejected(Rejection::InvalidPhone));
    assert_eq!(session.position, Position::Waiting(id(&s, "phone")));
    let reply = sends(&t)[0];
    assert!(reply.text.starts_with("Не получилось разобрать номер."));
    assert!(matches!(reply.keyboard, Keyboard::RequestContact { .. }));
}

#[test]
fn an_own_shared_contact_is_accepted_and_the_keyboard_is_removed_next() {
    let s = ru();
    let (session, t) = at_phone(
        &s,
        Input::Contact {
            phone: "79123456789".into(),
            own: true,
        },
    );
    assert_eq!(t.outcome, Outcome::Accepted);
    assert_eq!(session.answers["phone"].value, "+79123456789");
    let replies = sends(&t);
    // The next question has inline buttons, so the removal travels in a message of its own.
    assert_eq!(replies[0].keyboard, Keyboard::Remove);
    assert!(matches!(replies[1].keyboard, Keyboard::Choices(_)));
}

#[test]
fn someone_elses_contact_is_refused_with_a_hint() {
    let s = ru();
    let (session, t) = at_phone(
        &s,
        Input::Contact {
            phone: "79123456789".into(),
            own: false,
        },
    );
    assert_eq!(t.outcome, Outcome::Rejected(Rejection::ForeignContact));
    assert!(!session.answers.contains_key("phone"));
    assert!(texts(&t)[0].starts_with("Похоже, это чужой контакт."));
}

#[test]
fn a_sticker_gets_a_hint_naming_stickers_and_the_same_question() {
    let s = ru();
    let (session, ts) = play(&s, vec![Input::Start, Input::Media(MediaKind::Sticker)]);
    assert_eq!(
        ts[1].outcome,
        Outcome::Rejected(Rejection::Unsupported(MediaKind::Sticker))
    );
    assert!(texts(&ts[1])[0].starts_with("Я пока не умею читать стикеры — "));
    assert_eq!(session.position, Position::Waiting(id(&s, "consent")));
}

#[test]
fn a_five_thousand_character_paste_is_too_long() {
    let s = ru();
    let (_, ts) = play(
        &s,
        vec![
            Input::Start,
            button(&s, "consent", 0),
            text(&"я".repeat(5000)),
        ],
    );
    assert_eq!(ts[2].outcome, Outcome::Rejected(Rejection::TooLong));
    let (_, ts) = play(&s, vec![Input::Start, text(&"я".repeat(5000))]);
    assert_eq!(ts[1].outcome, Outcome::Rejected(Rejection::TooLong));
}

#[test]
fn an_empty_name_is_rejected() {
    let s = ru();
    let (_, ts) = play(
        &s,
        vec![Input::Start, button(&s, "consent", 0), text("   ")],
    );
    assert_eq!(ts[2].outcome, Outcome::Rejected(Rejection::InvalidName));
}

#[test]
fn the_hot_path_turns_hot_exactly_once_and_ends_with_the_hot_goodbye() {
    let s = ru();
    let session = up_to_need(&s);
    let (mut session, mut all) = (session, Vec::new());
    for input in [
        button(&s, "need", 1),
        button(&s, "timing", 0),
        button(&s, "offers", 0),
    ] {
        let t = advance(&s, &session, input);
        session = t.session.clone();
        all.push(t);
    }
    let hot_at: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, t)| t.effects.contains(&Effect::TurnedHot))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        hot_at,
        vec![1],
        "10 + 20 + 40 = 70 reaches hot at the timing answer"
    );
    assert_eq!(session.score, 70);
    assert_eq!(session.position, Position::Ended(id(&s, "bye_hot")));
    assert_eq!(
        texts(&all[2]).last().unwrap(),
        &"Спасибо! Менеджер свяжется с вами в течение 15 минут."
    );
    assert!(all[2].effects.contains(&Effect::Ended(id(&s, "bye_hot"))));
    assert_eq!(session.facts["marketing_consent"], Fact::Bool(true));
}

#[test]
fn a_hot_choice_forces_hot_with_a_breakdown_line() {
    let s = ru();
    let session = up_to_need(&s);
    let t = advance(&s, &session, button(&s, "need", 2));
    assert!(t.effects.contains(&Effect::TurnedHot));
    assert!(t.session.forced_hot);
    let item = t.session.breakdown.last().unwrap();
    assert_eq!(item.answer, "Готов купить, нужен счёт");
    assert!(item.hot);
}

#[test]
fn the_cold_path_ends_with_the_cold_goodbye() {
    let s = ru();
    let mut session = up_to_need(&s);
    for input in [
        button(&s, "need", 0),
        button(&s, "timing", 2),
        button(&s, "offers", 1),
    ] {
        let t = advance(&s, &session, input);
        assert!(!t.effects.contains(&Effect::TurnedHot));
        session = t.session;
    }
    assert_eq!(session.score, 10);
    assert_eq!(session.position, Position::Ended(id(&s, "bye_cold")));
}

#[test]
fn a_warm_path_ends_with_the_warm_goodbye() {
    let s = en();
    let mut session = up_to_need(&s);
    for input in [
        button(&s, "need", 1),
        button(&s, "timing", 2),
        button(&s, "offers", 1),
    ] {
        session = advance(&s, &session, input).session;
    }
    assert_eq!(session.score, 30);
    assert_eq!(session.position, Position::Ended(id(&s, "bye_warm")));
}

#[test]
fn no_consent_ends_the_dialogue_without_asking_anything_else() {
    let s = ru();
    let (session, ts) = play(&s, vec![Input::Start, button(&s, "consent", 1)]);
    assert_eq!(session.position, Position::Ended(id(&s, "bye_no_consent")));
    assert_eq!(
        texts(&ts[1]),
        vec!["Понимаем. Если передумаете — нажмите /start."]
    );
    assert!(!session.facts.contains_key("consent"));
}

#[test]
fn answers_after_the_end_are_idle_and_change_nothing() {
    let s = ru();
    let (session, _) = play(&s, vec![Input::Start, button(&s, "consent", 1)]);
    for input in [
        text("привет"),
        button(&s, "consent", 0),
        Input::Media(MediaKind::Photo),
    ] {
        let t = advance(&s, &session, input);
        assert_eq!(t.outcome, Outcome::Idle);
        assert!(t.effects.is_empty());
        assert_eq!(t.session, session);
    }
    let t = advance(&s, &Session::default(), text("hi"));
    assert_eq!(t.outcome, Outcome::Idle);
}

#[test]
fn restart_resets_the_score_but_keeps_answers_until_overwritten() {
    let s = ru();
    let mut session = up_to_need(&s);
    for input in [
        button(&s, "need", 2),
        button(&s, "timing", 0),
        button(&s, "offers", 0),
    ] {
        session = advance(&s, &session, input).session;
    }
    assert!(session.forced_hot);
    let t = advance(&s, &session, Input::Restart);
    assert_eq!(t.session.score, 0);
    assert!(!t.session.forced_hot);
    assert!(t.session.breakdown.is_empty());
    assert_eq!(t.session.answers["phone"].value, "+79123456789");
    assert_eq!(t.session.position, Position::Waiting(id(&s, "consent")));
}

#[test]
fn start_after_the_end_begins_again() {
    let s = ru();
    let (session, _) = play(&s, vec![Input::Start, button(&s, "consent", 1)]);
    let t = advance(&s, &session, Input::Start);
    assert_eq!(t.session.position, Position::Waiting(id(&s, "consent")));
}

#[test]
fn a_session_pointing_past_the_script_is_treated_as_not_started() {
    let s = ru();
    let broken = Session {
        position: Position::Waiting(StepId(999)),
        ..Session::default()
    };
    let t = advance(&s, &broken, text("hi"));
    assert_eq!(t.outcome, Outcome::Idle);
    assert_eq!(t.session.position, Position::NotStarted);
    let t = advance(&s, &broken, Input::Start);
    assert_eq!(t.session.position, Position::Waiting(id(&s, "consent")));
}

#[test]
fn branch_conditions_read_answers_and_facts() {
    let source = r#"
id: t
locale: en
start: budget
steps:
  budget:
    ask: "Budget?"
    input: number
    next: route
  route:
    branch:
      - { if: "answers.budget >= 1000", next: big }
      - { next: small }
  big: { say: "Big", end: true }
  small: { say: "Small", end: true }
"#;
    let s = compile("t", source).unwrap().script;
    let (session, _) = play(&s, vec![Input::Start, text("1500")]);
    assert_eq!(session.position, Position::Ended(id(&s, "big")));
    assert_eq!(session.answers["budget"].number, Some(1500.0));
    let (session, _) = play(&s, vec![Input::Start, text("20")]);
    assert_eq!(session.position, Position::Ended(id(&s, "small")));
}

#[test]
fn an_unchecked_say_loop_still_terminates() {
    let s = ru();
    let mut looped = s.clone();
    let greet = id(&s, "greet");
    looped.steps[greet.index()].kind = StepKind::Say {
        text: "again".into(),
        set: Vec::new(),
        next: greet,
    };
    let t = advance(&looped, &Session::default(), Input::Start);
    assert!(matches!(t.session.position, Position::Ended(_)));
}

fn any_input(steps: u16) -> impl Strategy<Value = Input> {
    prop_oneof![
        Just(Input::Start),
        Just(Input::Restart),
        ".{0,12}".prop_map(Input::Text),
        prop::sample::select(vec![
            "Согласен",
            "I agree",
            "8 912 345-67-89",
            "+7 999 000 11 22",
            "Анна",
            "This month",
            "В этом месяце",
            "Сравниваю варианты",
            "Comparing options",
            "Yes, please",
        ])
        .prop_map(|s| Input::Text(s.to_owned())),
        (0..steps + 3, 0u8..6).prop_map(|(step, index)| Input::Choice {
            step: StepId(step),
            index
        }),
        ("[0-9+ ]{0,14}", any::<bool>()).prop_map(|(phone, own)| Input::Contact { phone, own }),
        prop::sample::select(vec![MediaKind::Sticker, MediaKind::Photo, MediaKind::Voice])
            .prop_map(Input::Media),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_input_sequence_keeps_the_session_valid(
        use_en in any::<bool>(),
        inputs in prop::collection::vec(any_input(12), 0..40),
    ) {
        let s = if use_en { en() } else { ru() };
        let mut session = Session::default();
        for input in inputs {
            let restarts = matches!(input, Input::Start | Input::Restart);
            let t = advance(&s, &session, input);
            match t.session.position {
                Position::NotStarted => {}
                Position::Waiting(id) => {
                    let asks = matches!(
                        s.steps[id.index()].kind,
                        StepKind::Choice { .. } | StepKind::Input { .. }
                    );
                    prop_assert!(asks, "waiting at a step that asks nothing");
                }
                Position::Ended(id) => {
                    let ends = matches!(s.steps[id.index()].kind, StepKind::End { .. });
                    prop_assert!(ends, "ended at a step that is not an end");
                }
            }
            if let Position::Waiting(before) = session.position
                && t.session.position != Position::Waiting(before)
            {
                prop_assert!(restarts || t.outcome == Outcome::Accepted);
            }
            if t.outcome != Outcome::Accepted {
                prop_assert_eq!(&t.session.answers, &session.answers);
            }
            for effect in &t.effects {
                if let Effect::Answered { key, answer } = effect {
                    prop_assert_eq!(t.session.answers.get(key), Some(answer));
                }
            }
            session = t.session;
        }
    }
}
