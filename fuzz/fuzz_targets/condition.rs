//! Any text as a branch condition: it parses or is refused with a position inside the text, and a
//! parsed condition evaluates against any answers.
#![no_main]

use leadbot::dialogue::expr::{self, Value, Var};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    match expr::parse(source) {
        Ok(e) => {
            let _ = e.vars();
            for lookup in [
                &(|_: &Var| Value::Missing) as &dyn Fn(&Var) -> Value,
                &|_: &Var| Value::Number(f64::NAN),
                &|_: &Var| Value::Text("hot".into()),
                &|_: &Var| Value::Bool(true),
            ] {
                let _ = e.eval(lookup);
            }
        }
        Err(err) => {
            let column = err.column(source);
            assert!(column >= 1 && column <= source.chars().count() + 1, "column {column}");
            let _ = err.describe(source);
        }
    }
});
