//! The Bot API method table, used to reject unknown and missing parameters.
//!
//! `bot_api_methods.json` is a compact extract of `/work/shared/telegram-bot-api.json`
//! (method → `[field, required, types]`), regenerated with:
//!
//! ```text
//! python3 -c "import json; d=json.load(open('telegram-bot-api.json')); \
//!   out={m:[[f['name'],f['required'],f['types']] for f in v.get('fields',[])] for m,v in d['methods'].items()}; \
//!   print(json.dumps({'version':d['version'],'methods':out},separators=(',',':'),ensure_ascii=False))" \
//!   > tests/it/support/bot_api_methods.json
//! ```
//!
//! It is embedded rather than read at run time so the test binary does not depend on
//! a path outside the repository.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{Map, Value};

/// One parameter of a Bot API method.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    /// Parameter name, e.g. `chat_id`.
    pub name: String,
    /// Whether Telegram rejects a call without it.
    pub required: bool,
    /// Accepted types as the documentation names them (`Integer`, `Array of String`, ...).
    pub types: Vec<String>,
}

/// One Bot API method with its parameters.
#[derive(Debug, Clone)]
pub struct MethodSpec {
    /// Canonical (camelCase) method name.
    pub name: String,
    /// Parameters in documentation order.
    pub fields: Vec<FieldSpec>,
}

static METHODS: LazyLock<HashMap<String, MethodSpec>> = LazyLock::new(|| {
    let raw: Value = serde_json::from_str(include_str!("bot_api_methods.json"))
        .expect("bot_api_methods.json is generated JSON and must parse");
    let mut methods = HashMap::new();
    if let Some(map) = raw.get("methods").and_then(Value::as_object) {
        for (name, fields) in map {
            let fields = fields
                .as_array()
                .map(|fields| fields.iter().filter_map(parse_field).collect())
                .unwrap_or_default();
            methods.insert(
                name.to_ascii_lowercase(),
                MethodSpec {
                    name: name.clone(),
                    fields,
                },
            );
        }
    }
    methods
});

fn parse_field(field: &Value) -> Option<FieldSpec> {
    let name = field.get(0)?.as_str()?.to_owned();
    let required = field.get(1)?.as_bool()?;
    let types = field
        .get(2)?
        .as_array()?
        .iter()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    Some(FieldSpec {
        name,
        required,
        types,
    })
}

/// Looks a method up the way Telegram does: method names are case-insensitive.
pub fn method(name: &str) -> Option<&'static MethodSpec> {
    METHODS.get(&name.to_ascii_lowercase())
}

/// The Bot API version the table was extracted from.
pub fn version() -> &'static str {
    static VERSION: LazyLock<String> = LazyLock::new(|| {
        serde_json::from_str::<Value>(include_str!("bot_api_methods.json"))
            .ok()
            .and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default()
    });
    &VERSION
}

impl MethodSpec {
    /// The parameter called `name`, if the method has one.
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Rejects unknown parameters, missing required ones and values of the wrong JSON type,
    /// returning Telegram-style `Bad Request: ...` descriptions.
    ///
    /// Real Telegram silently ignores unknown parameters; the fake is stricter on purpose so a
    /// misspelt field fails a test instead of being dropped.
    pub fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        for (name, value) in params {
            let Some(field) = self.field(name) else {
                return Err(format!(
                    "Bad Request: unknown parameter \"{name}\" for method {}",
                    self.name
                ));
            };
            if !field.types.iter().any(|t| value_has_type(value, t)) {
                return Err(format!(
                    "Bad Request: parameter \"{name}\" must be {}",
                    field.types.join(" or ")
                ));
            }
        }
        for field in self.fields.iter().filter(|f| f.required) {
            if !params.contains_key(&field.name) {
                return Err(missing_parameter(&self.name, &field.name));
            }
        }
        Ok(())
    }

    /// Converts a form or multipart text value into the JSON value it stands for: numbers,
    /// booleans, objects and arrays arrive as text there (teloxide sends structs as JSON text).
    pub fn coerce_text(&self, name: &str, text: &str) -> Value {
        let only_string = self
            .field(name)
            .is_some_and(|f| f.types.iter().all(|t| t == "String" || t == "InputFile"));
        if only_string {
            return Value::String(text.to_owned());
        }
        match serde_json::from_str::<Value>(text) {
            Ok(value) if !value.is_string() => value,
            _ => Value::String(text.to_owned()),
        }
    }
}

/// Telegram's wording for the missing parameters a bot is most likely to forget, a generic
/// sentence for the rest.
fn missing_parameter(method: &str, field: &str) -> String {
    match (method, field) {
        ("sendMessage" | "editMessageText", "text") => "Bad Request: message text is empty".into(),
        (_, "chat_id") => "Bad Request: chat_id is empty".into(),
        (_, "message_id") => "Bad Request: message identifier is not specified".into(),
        _ => format!("Bad Request: parameter \"{field}\" is required"),
    }
}

fn value_has_type(value: &Value, ty: &str) -> bool {
    match ty {
        "Integer" => value.is_i64() || value.is_u64(),
        "Float" => value.is_number(),
        "String" | "InputFile" => value.is_string(),
        "Boolean" => value.is_boolean(),
        t if t.starts_with("Array of") => value.is_array(),
        _ => value.is_object(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn method_lookup_ignores_case_like_telegram() {
        let spec = method("SENDMESSAGE").expect("sendMessage is in the table");
        assert_eq!(spec.name, "sendMessage");
        assert!(method("sendMessages").is_none());
        assert!(version().starts_with("Bot API"));
    }

    #[test]
    fn unknown_parameter_is_rejected_by_name() {
        let spec = method("sendMessage").expect("sendMessage is in the table");
        let params = json!({"chat_id": 1, "text": "hi", "reply_to": 5});
        let err = spec
            .validate(params.as_object().expect("object"))
            .expect_err("reply_to is not a sendMessage parameter");
        assert!(err.contains("\"reply_to\""), "{err}");
    }

    #[test]
    fn missing_text_reads_like_telegram() {
        let spec = method("sendMessage").expect("sendMessage is in the table");
        let params = json!({"chat_id": 1});
        assert_eq!(
            spec.validate(params.as_object().expect("object")),
            Err("Bad Request: message text is empty".to_owned())
        );
    }

    #[test]
    fn wrongly_typed_value_is_rejected() {
        let spec = method("sendMessage").expect("sendMessage is in the table");
        let params = json!({"chat_id": 1, "text": "hi", "reply_markup": "[]"});
        assert!(spec.validate(params.as_object().expect("object")).is_err());
    }

    #[test]
    fn multipart_text_is_coerced_by_declared_type() {
        let spec = method("sendDocument").expect("sendDocument is in the table");
        assert_eq!(spec.coerce_text("chat_id", "-100"), json!(-100));
        assert_eq!(spec.coerce_text("chat_id", "@chan"), json!("@chan"));
        assert_eq!(spec.coerce_text("caption", "42"), json!("42"));
        assert_eq!(
            spec.coerce_text("reply_markup", r#"{"inline_keyboard":[]}"#),
            json!({"inline_keyboard": []})
        );
    }
}
