//! Tests of the fake Telegram server itself, driven by a real teloxide `Bot`.
