//! Any text as a dialogue file: `compile` reports diagnostics or a script, never panics; a script
//! that compiles can be drawn and walked from its start.
#![no_main]

use leadbot::dialogue::{self, Input, Position, Session};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(compiled) = dialogue::compile("fuzz.yaml", source) else {
        return;
    };
    let script = compiled.script;
    let _ = dialogue::mermaid(&script);
    // Walk the dialogue: start, then answer each question with a text and its first choice.
    let mut session = Session::default();
    let mut input = Input::Start;
    for round in 0..64 {
        let transition = dialogue::advance(&script, &session, input);
        session = transition.session;
        input = match &session.position {
            Position::Waiting(step) if round % 2 == 0 => Input::Choice {
                step: step.clone(),
                index: 0,
            },
            Position::Ended(_) => Input::Restart,
            _ => Input::Text("Анна +7 912 345-67-89".to_owned()),
        };
    }
});
