//! Branch conditions: a small expression language.
//!
//! ```text
//! condition  := or
//! or         := and ("or" and)*
//! and        := unary ("and" unary)*
//! unary      := "not" (unary | group | operand) | comparison
//! comparison := group | operand (cmp operand)?
//! group      := "(" condition ")"
//! cmp        := "==" | "!=" | "<" | "<=" | ">" | ">="
//! operand    := variable | number | string | "true" | "false" | "cold" | "warm" | "hot"
//! variable   := "score" | "temperature" | "answers." key | "facts." key | key
//! ```
//!
//! Precedence is `not` > comparison > `and` > `or`. Because `not` binds tighter than a comparison,
//! `not a == b` would mean `(not a) == b`, which is never what a person means, so it is refused
//! with a hint to write `not (a == b)`. Keywords (`and`, `not`, `true`, `hot`, …) are
//! case-insensitive; variable names are not.
//!
//! Evaluation never fails: a comparison involving a missing value, two values of different
//! types, or an ordering of texts or booleans is false (for `!=` too). Texts compare with `==`
//! and `!=` case-insensitively, because the labels they are compared with are typed by people.

use crate::domain::Temperature;
use std::fmt;

/// Longest condition accepted, so hostile input costs little.
const MAX_SOURCE_BYTES: usize = 4096;
/// Deepest nesting of parentheses and `not`, so parsing and evaluation cannot overflow the stack.
const MAX_DEPTH: usize = 64;

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A variable (or `true`/`false`) on its own: holds when the value is truthy.
    Test(Operand),
    /// `left op right`.
    Compare {
        left: Operand,
        op: CmpOp,
        right: Operand,
    },
    /// `not inner`.
    Not(Box<Expr>),
    /// All of two or more conditions, in source order.
    And(Vec<Expr>),
    /// Any of two or more conditions, in source order.
    Or(Vec<Expr>),
}

/// One side of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    Var(Var),
    Literal(Literal),
}

/// A constant written in a condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Bool(bool),
    Number(f64),
    Text(String),
    /// The bare words `cold`, `warm`, `hot`; they evaluate to the text of the temperature.
    Temperature(Temperature),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Something a condition can read from a lead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Var {
    /// `score`.
    Score,
    /// `temperature`: looked up as `Value::Text("cold" | "warm" | "hot")`.
    Temperature,
    /// `answers.<key>`: the answer saved under `key`.
    Answer(String),
    /// `facts.<key>` or a bare `<key>`: a value set by a choice's `set:`.
    Fact(String),
}

/// The value of a variable when a condition is evaluated.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Missing,
    Bool(bool),
    Number(f64),
    Text(String),
}

/// Why a condition does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset into the source, for column reporting.
    pub offset: usize,
    /// What was expected or found, without the location.
    pub message: String,
}

impl ExprError {
    fn new(offset: usize, message: impl Into<String>) -> ExprError {
        ExprError {
            offset,
            message: message.into(),
        }
    }

    /// The 1-based column (in characters) of the error within `source`.
    pub fn column(&self, source: &str) -> usize {
        let end = self.offset.min(source.len());
        source.char_indices().take_while(|(i, _)| *i < end).count() + 1
    }

    /// The message with its column, e.g. `expected a value after '>=' at column 10`.
    pub fn describe(&self, source: &str) -> String {
        format!("{} at column {}", self.message, self.column(source))
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl std::error::Error for ExprError {}

/// Parses a branch condition such as `temperature == hot or score >= 30`.
pub fn parse(source: &str) -> Result<Expr, ExprError> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(ExprError::new(
            MAX_SOURCE_BYTES,
            format!("the condition is longer than {MAX_SOURCE_BYTES} bytes"),
        ));
    }
    let tokens = tokenize(source)?;
    if tokens.len() == 1 {
        return Err(ExprError::new(0, "the condition is empty"));
    }
    let mut parser = Parser {
        source,
        tokens,
        pos: 0,
        depth: 0,
    };
    let expr = parser.parse_or()?;
    let token = parser.peek();
    match token.kind {
        Tok::End => Ok(expr),
        Tok::RParen => Err(ExprError::new(token.start, "unmatched ')'")),
        _ => Err(ExprError::new(
            token.start,
            format!("trailing input '{}'", excerpt(&source[token.start..])),
        )),
    }
}

impl std::str::FromStr for Expr {
    type Err = ExprError;

    fn from_str(source: &str) -> Result<Expr, ExprError> {
        parse(source)
    }
}

impl Expr {
    /// Whether the condition holds, reading variables through `lookup`.
    pub fn eval(&self, lookup: &dyn Fn(&Var) -> Value) -> bool {
        match self {
            Expr::Test(operand) => truthy(&operand.value(lookup)),
            Expr::Compare { left, op, right } => {
                compare(&left.value(lookup), *op, &right.value(lookup))
            }
            Expr::Not(inner) => !inner.eval(lookup),
            Expr::And(all) => all.iter().all(|e| e.eval(lookup)),
            Expr::Or(any) => any.iter().any(|e| e.eval(lookup)),
        }
    }

    /// Every variable mentioned, once each, in order of first mention.
    pub fn vars(&self) -> Vec<Var> {
        let mut vars = Vec::new();
        self.collect_vars(&mut vars);
        vars
    }

    fn collect_vars(&self, vars: &mut Vec<Var>) {
        let mut add = |operand: &Operand| {
            if let Operand::Var(var) = operand
                && !vars.contains(var)
            {
                vars.push(var.clone());
            }
        };
        match self {
            Expr::Test(operand) => add(operand),
            Expr::Compare { left, right, .. } => {
                add(left);
                add(right);
            }
            Expr::Not(inner) => inner.collect_vars(vars),
            Expr::And(list) | Expr::Or(list) => {
                for e in list {
                    e.collect_vars(vars);
                }
            }
        }
    }
}

impl Operand {
    fn value(&self, lookup: &dyn Fn(&Var) -> Value) -> Value {
        match self {
            Operand::Var(var) => lookup(var),
            Operand::Literal(Literal::Bool(b)) => Value::Bool(*b),
            Operand::Literal(Literal::Number(n)) => Value::Number(*n),
            Operand::Literal(Literal::Text(t)) => Value::Text(t.clone()),
            Operand::Literal(Literal::Temperature(t)) => Value::Text(t.as_str().to_owned()),
        }
    }
}

/// Whether a value on its own counts as true.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Missing => false,
        Value::Bool(b) => *b,
        Value::Number(n) => *n != 0.0 && !n.is_nan(),
        Value::Text(t) => !t.is_empty(),
    }
}

/// Compares two values; anything that cannot be compared is false, never an error.
fn compare(left: &Value, op: CmpOp, right: &Value) -> bool {
    use std::cmp::Ordering;
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.partial_cmp(b).is_some_and(|o| match op {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        }),
        (Value::Text(a), Value::Text(b)) => match op {
            CmpOp::Eq => same_text(a, b),
            CmpOp::Ne => !same_text(a, b),
            _ => false,
        },
        (Value::Bool(a), Value::Bool(b)) => match op {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            _ => false,
        },
        _ => false,
    }
}

/// Case-insensitive text equality without allocating.
fn same_text(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Number(f64),
    Str(String),
    Cmp(CmpOp),
    LParen,
    RParen,
    And,
    Or,
    Not,
    Bool(bool),
    Temp(Temperature),
    End,
}

#[derive(Clone, Debug)]
struct Token {
    kind: Tok,
    start: usize,
    end: usize,
}

fn tokenize(source: &str) -> Result<Vec<Token>, ExprError> {
    let mut tokens = Vec::new();
    let mut chars = source.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        let kind = if c.is_whitespace() {
            chars.next();
            continue;
        } else if c == '(' {
            chars.next();
            Tok::LParen
        } else if c == ')' {
            chars.next();
            Tok::RParen
        } else if c == '"' || c == '\'' {
            Tok::Str(string(start, &mut chars)?)
        } else if c.is_ascii_digit()
            || (c == '-' && source[start + 1..].starts_with(|d: char| d.is_ascii_digit()))
        {
            Tok::Number(number(source, start, &mut chars)?)
        } else if is_operator_char(c) {
            Tok::Cmp(operator(source, start, &mut chars)?)
        } else if c.is_alphabetic() || c == '_' {
            word(source, start, &mut chars)?
        } else {
            return Err(ExprError::new(start, format!("unexpected character '{c}'")));
        };
        let end = chars.peek().map_or(source.len(), |&(i, _)| i);
        tokens.push(Token { kind, start, end });
    }
    tokens.push(Token {
        kind: Tok::End,
        start: source.len(),
        end: source.len(),
    });
    Ok(tokens)
}

type Chars<'a> = std::iter::Peekable<std::str::CharIndices<'a>>;

fn string(start: usize, chars: &mut Chars<'_>) -> Result<String, ExprError> {
    let Some((_, quote)) = chars.next() else {
        return Err(ExprError::new(start, "unterminated string"));
    };
    let mut text = String::new();
    loop {
        match chars.next() {
            None => return Err(ExprError::new(start, "unterminated string")),
            Some((_, c)) if c == quote => return Ok(text),
            Some((at, '\\')) => match chars.next() {
                Some((_, c @ ('"' | '\'' | '\\'))) => text.push(c),
                Some((_, c)) => {
                    return Err(ExprError::new(
                        at,
                        format!("unknown escape '\\{c}' (only \\\" \\' and \\\\ are allowed)"),
                    ));
                }
                None => return Err(ExprError::new(start, "unterminated string")),
            },
            Some((_, c)) => text.push(c),
        }
    }
}

fn number(source: &str, start: usize, chars: &mut Chars<'_>) -> Result<f64, ExprError> {
    let mut end = start;
    let mut seen_dot = false;
    if let Some(&(_, '-')) = chars.peek() {
        chars.next();
        end += 1;
    }
    while let Some(&(i, c)) = chars.peek() {
        if c.is_ascii_digit() {
            end = i + 1;
        } else if c == '.' && !seen_dot {
            if !source[i + 1..].starts_with(|d: char| d.is_ascii_digit()) {
                return Err(ExprError::new(i, "expected digits after '.'"));
            }
            seen_dot = true;
            end = i + 1;
        } else {
            break;
        }
        chars.next();
    }
    let text = &source[start..end];
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        _ => Err(ExprError::new(
            start,
            format!("the number '{}' is too large", excerpt(text)),
        )),
    }
}

fn is_operator_char(c: char) -> bool {
    matches!(c, '=' | '!' | '<' | '>' | '&' | '|')
}

fn operator(source: &str, start: usize, chars: &mut Chars<'_>) -> Result<CmpOp, ExprError> {
    let mut end = start;
    while let Some(&(i, c)) = chars.peek() {
        if !is_operator_char(c) {
            break;
        }
        end = i + c.len_utf8();
        chars.next();
    }
    let text = &source[start..end];
    let hint = match text {
        "==" => return Ok(CmpOp::Eq),
        "!=" => return Ok(CmpOp::Ne),
        "<" => return Ok(CmpOp::Lt),
        "<=" => return Ok(CmpOp::Le),
        ">" => return Ok(CmpOp::Gt),
        ">=" => return Ok(CmpOp::Ge),
        "=" => " (use '==' to compare)",
        "=>" => " (did you mean '>='?)",
        "=<" => " (did you mean '<='?)",
        "&&" | "&" => " (use 'and')",
        "||" | "|" => " (use 'or')",
        "!" => " (use 'not')",
        _ => "",
    };
    Err(ExprError::new(
        start,
        format!("unknown operator '{text}'{hint}"),
    ))
}

fn word(source: &str, start: usize, chars: &mut Chars<'_>) -> Result<Tok, ExprError> {
    let mut end = start;
    while let Some(&(i, c)) = chars.peek() {
        if !(c.is_alphanumeric() || c == '_' || c == '.') {
            break;
        }
        end = i + c.len_utf8();
        chars.next();
    }
    let text = &source[start..end];
    if text.split('.').any(str::is_empty) {
        return Err(ExprError::new(
            start,
            format!("'{}' has an empty part between dots", excerpt(text)),
        ));
    }
    Ok(match text.to_lowercase().as_str() {
        "and" => Tok::And,
        "or" => Tok::Or,
        "not" => Tok::Not,
        "true" => Tok::Bool(true),
        "false" => Tok::Bool(false),
        other => match Temperature::parse(other) {
            Some(t) => Tok::Temp(t),
            None => Tok::Ident(text.to_owned()),
        },
    })
}

/// At most 20 characters of `text`, for quoting in a message.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(20) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Keywords that cannot name a fact on their own.
fn is_reserved(word: &str) -> bool {
    let lower = word.to_lowercase();
    matches!(
        lower.as_str(),
        "and" | "or" | "not" | "true" | "false" | "cold" | "warm" | "hot"
    ) || matches!(word, "score" | "temperature" | "answers" | "facts")
}

fn var_from_ident(name: &str) -> Result<Var, String> {
    match name {
        "score" => return Ok(Var::Score),
        "temperature" => return Ok(Var::Temperature),
        "answers" | "facts" => return Err(format!("'{name}' needs a key, e.g. {name}.budget")),
        _ => {}
    }
    match name.split_once('.') {
        Some(("answers", key)) => Ok(Var::Answer(key.to_owned())),
        Some(("facts", key)) => Ok(Var::Fact(key.to_owned())),
        Some(_) => Err(format!(
            "unknown variable '{}' (use answers.<key> or facts.<key>)",
            excerpt(name)
        )),
        None => Ok(Var::Fact(name.to_owned())),
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser<'a> {
    source: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The token list always ends with `End` and `pos` never passes it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != Tok::End {
            self.pos += 1;
        }
        token
    }

    /// "expected X after 'previous token'", pointing at the current token.
    fn expected(&self, what: &str) -> ExprError {
        let at = self.peek().start;
        match self.pos.checked_sub(1).map(|i| &self.tokens[i]) {
            Some(prev) => ExprError::new(
                at,
                format!(
                    "expected {what} after '{}'",
                    &self.source[prev.start..prev.end]
                ),
            ),
            None => ExprError::new(at, format!("expected {what}")),
        }
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::new(
                self.peek().start,
                format!("the condition nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Expr, ExprError> {
        let mut list = vec![self.parse_and()?];
        while self.peek().kind == Tok::Or {
            self.bump();
            list.push(self.parse_and()?);
        }
        Ok(if list.len() == 1 {
            list.remove(0)
        } else {
            Expr::Or(list)
        })
    }

    fn parse_and(&mut self) -> Result<Expr, ExprError> {
        let mut list = vec![self.parse_unary()?];
        while self.peek().kind == Tok::And {
            self.bump();
            list.push(self.parse_unary()?);
        }
        Ok(if list.len() == 1 {
            list.remove(0)
        } else {
            Expr::And(list)
        })
    }

    fn parse_unary(&mut self) -> Result<Expr, ExprError> {
        if self.peek().kind != Tok::Not {
            return self.parse_comparison(None);
        }
        let not = self.bump();
        self.enter()?;
        // `not` takes the next operand, group or `not`, never a whole comparison (precedence).
        let inner = if self.peek().kind == Tok::Not {
            self.parse_unary()?
        } else {
            self.parse_comparison(Some(not.start))?
        };
        self.depth -= 1;
        Ok(Expr::Not(Box::new(inner)))
    }

    /// A group, a comparison, or a lone variable; `after_not` is the offset of a `not` just
    /// before it, in which case a comparison operator is refused as ambiguous.
    fn parse_comparison(&mut self, after_not: Option<usize>) -> Result<Expr, ExprError> {
        if self.peek().kind == Tok::LParen {
            return self.parse_group();
        }
        let left_at = self.peek().start;
        let left = self.parse_operand("a condition")?;
        let Tok::Cmp(op) = self.peek().kind else {
            return match left {
                Operand::Var(_) | Operand::Literal(Literal::Bool(_)) => Ok(Expr::Test(left)),
                Operand::Literal(literal) => Err(ExprError::new(
                    left_at,
                    format!(
                        "{} alone is not a condition; compare it, e.g. {}",
                        Operand::Literal(literal.clone()),
                        example_comparison(&literal)
                    ),
                )),
            };
        };
        if let Some(not_at) = after_not {
            return Err(ExprError::new(
                not_at,
                format!(
                    "'not' binds tighter than '{op}': write 'not (a {op} b)' to negate the comparison"
                ),
            ));
        }
        self.bump();
        let right = self.parse_operand("a value")?;
        if let Tok::Cmp(_) = self.peek().kind {
            return Err(ExprError::new(
                self.peek().start,
                "comparisons cannot be chained; join them with 'and'",
            ));
        }
        Ok(Expr::Compare { left, op, right })
    }

    /// `( condition )`.
    fn parse_group(&mut self) -> Result<Expr, ExprError> {
        let open = self.bump();
        self.enter()?;
        let inner = self.parse_or()?;
        self.depth -= 1;
        let close = self.peek().clone();
        match close.kind {
            Tok::RParen => {
                self.bump();
            }
            Tok::End => return Err(ExprError::new(open.start, "unclosed '('")),
            _ => {
                return Err(ExprError::new(
                    close.start,
                    format!(
                        "expected ')' or 'and'/'or', found '{}'",
                        excerpt(&self.source[close.start..close.end])
                    ),
                ));
            }
        }
        if let Tok::Cmp(_) = self.peek().kind {
            return Err(ExprError::new(
                self.peek().start,
                "a comparison needs a variable or a value on its left, not a condition in parentheses",
            ));
        }
        Ok(inner)
    }

    fn parse_operand(&mut self, what: &str) -> Result<Operand, ExprError> {
        let token = self.peek().clone();
        let operand = match token.kind {
            Tok::Ident(name) => Operand::Var(
                var_from_ident(&name).map_err(|message| ExprError::new(token.start, message))?,
            ),
            Tok::Number(n) => Operand::Literal(Literal::Number(n)),
            Tok::Str(s) => Operand::Literal(Literal::Text(s)),
            Tok::Bool(b) => Operand::Literal(Literal::Bool(b)),
            Tok::Temp(t) => Operand::Literal(Literal::Temperature(t)),
            _ => return Err(self.expected(what)),
        };
        self.bump();
        Ok(operand)
    }
}

/// A comparison a person probably meant when they wrote only a constant.
fn example_comparison(literal: &Literal) -> String {
    match literal {
        Literal::Temperature(t) => format!("temperature == {t}"),
        Literal::Number(_) => format!("score >= {}", Operand::Literal(literal.clone())),
        _ => format!("answers.key == {}", Operand::Literal(literal.clone())),
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical text

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parenthesise a child only where re-parsing would otherwise group it differently.
        let child = |f: &mut fmt::Formatter<'_>, e: &Expr, wrap: bool| {
            if wrap {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        };
        match self {
            Expr::Test(operand) => write!(f, "{operand}"),
            Expr::Compare { left, op, right } => write!(f, "{left} {op} {right}"),
            Expr::Not(inner) => {
                f.write_str("not ")?;
                child(f, inner, !matches!(**inner, Expr::Test(_) | Expr::Not(_)))
            }
            Expr::And(list) => {
                for (i, e) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    child(f, e, matches!(e, Expr::And(_) | Expr::Or(_)))?;
                }
                Ok(())
            }
            Expr::Or(list) => {
                for (i, e) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    child(f, e, matches!(e, Expr::Or(_)))?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Var(var) => write!(f, "{var}"),
            Operand::Literal(literal) => write!(f, "{literal}"),
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Bool(b) => write!(f, "{b}"),
            // f64's Display is the shortest text that parses back to the same value, never exponential.
            Literal::Number(n) => write!(f, "{n}"),
            Literal::Text(text) => {
                f.write_str("\"")?;
                for c in text.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")
            }
            Literal::Temperature(t) => write!(f, "{t}"),
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        })
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Score => f.write_str("score"),
            Var::Temperature => f.write_str("temperature"),
            Var::Answer(key) => write!(f, "answers.{key}"),
            Var::Fact(key) if is_bare_key(key) => f.write_str(key),
            Var::Fact(key) => write!(f, "facts.{key}"),
        }
    }
}

/// Whether a fact key can be written without its `facts.` prefix and still parse back to itself.
fn is_bare_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
        && !is_reserved(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lead(var: &Var) -> Value {
        match var {
            Var::Score => Value::Number(45.0),
            Var::Temperature => Value::Text("warm".to_owned()),
            Var::Answer(key) if key == "budget" => Value::Text("Big".to_owned()),
            Var::Answer(key) if key == "seats" => Value::Number(3.0),
            Var::Fact(key) if key == "marketing_consent" => Value::Bool(true),
            Var::Fact(key) if key == "consent" => Value::Bool(false),
            Var::Fact(key) if key == "zero" => Value::Number(0.0),
            Var::Fact(key) if key == "blank" => Value::Text(String::new()),
            _ => Value::Missing,
        }
    }

    fn holds(source: &str) -> bool {
        parse(source).unwrap().eval(&lead)
    }

    fn error(source: &str) -> String {
        parse(source).unwrap_err().describe(source)
    }

    fn var(name: &str) -> Operand {
        Operand::Var(var_from_ident(name).unwrap())
    }

    #[test]
    fn variables_map_to_score_temperature_answers_and_facts() {
        assert_eq!(
            parse(
                "score >= 30 and temperature == hot and answers.budget == 'big' and facts.x and y"
            )
            .unwrap()
            .vars(),
            vec![
                Var::Score,
                Var::Temperature,
                Var::Answer("budget".to_owned()),
                Var::Fact("x".to_owned()),
                Var::Fact("y".to_owned()),
            ]
        );
    }

    #[test]
    fn vars_lists_each_variable_once_in_order_of_mention() {
        assert_eq!(
            parse("b or a or b == a").unwrap().vars(),
            vec![Var::Fact("b".to_owned()), Var::Fact("a".to_owned())]
        );
    }

    #[test]
    fn temperature_compares_with_bare_word_or_string_case_insensitively() {
        assert!(holds("temperature == warm"));
        assert!(holds("temperature == \"warm\""));
        assert!(holds("temperature == 'WARM'"));
        assert!(!holds("temperature == hot"));
        assert!(holds("temperature != hot"));
    }

    #[test]
    fn text_equality_ignores_case() {
        assert!(holds("answers.budget == \"big\""));
        assert!(holds("answers.budget == 'BIG'"));
        assert!(!holds("answers.budget != 'big'"));
    }

    #[test]
    fn numbers_compare_numerically() {
        assert!(holds("score >= 30"));
        assert!(holds("score > 44.5"));
        assert!(holds("score <= 45"));
        assert!(holds("score == 45.0"));
        assert!(!holds("score < 45"));
        assert!(holds("score != 44"));
        assert!(holds("answers.seats > -3"));
    }

    #[test]
    fn ordering_texts_or_booleans_is_false() {
        assert!(!holds("answers.budget < 'zzz'"));
        assert!(!holds("answers.budget >= 'a'"));
        assert!(!holds("marketing_consent > false"));
    }

    #[test]
    fn mixing_types_is_false_for_every_operator() {
        assert!(!holds("score == '45'"));
        assert!(!holds("score != '45'"));
        assert!(!holds("answers.budget == 1"));
        assert!(!holds("marketing_consent == 1"));
        assert!(!holds("temperature != true"));
    }

    #[test]
    fn comparison_with_a_missing_value_is_false_even_for_not_equal() {
        assert!(!holds("answers.missing == 'a'"));
        assert!(!holds("answers.missing != 'a'"));
        assert!(!holds("answers.missing < 1"));
        assert!(holds("not (answers.missing == 'a')"));
    }

    #[test]
    fn bare_variable_is_truthy_when_true_non_zero_or_non_empty() {
        assert!(holds("marketing_consent"));
        assert!(!holds("consent"));
        assert!(holds("score"));
        assert!(!holds("zero"));
        assert!(holds("answers.budget"));
        assert!(!holds("blank"));
        assert!(!holds("unknown_fact"));
        assert!(holds("true"));
        assert!(!holds("false"));
    }

    #[test]
    fn booleans_compare_with_boolean_literals() {
        assert!(holds("marketing_consent == true"));
        assert!(holds("consent == false"));
        assert!(holds("consent != TRUE"));
    }

    #[test]
    fn not_and_or_follow_their_precedence() {
        // `or` binds loosest: true or (false and false).
        assert!(holds("marketing_consent or consent and consent"));
        // `not` binds tighter than `and`: (not consent) and marketing_consent.
        assert!(holds("not consent and marketing_consent"));
        assert!(!holds("not (consent or marketing_consent)"));
        assert!(holds("not not marketing_consent"));
        assert_eq!(
            parse("a or b and c").unwrap(),
            Expr::Or(vec![
                Expr::Test(var("a")),
                Expr::And(vec![Expr::Test(var("b")), Expr::Test(var("c"))]),
            ])
        );
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(
            parse("score >= 30 AND NOT consent Or temperature == HOT").unwrap(),
            parse("score >= 30 and not consent or temperature == hot").unwrap()
        );
    }

    #[test]
    fn string_escapes_are_decoded() {
        assert_eq!(
            parse(r#"answers.q == "say \"hi\" \\ 'there'""#).unwrap(),
            Expr::Compare {
                left: var("answers.q"),
                op: CmpOp::Eq,
                right: Operand::Literal(Literal::Text(r#"say "hi" \ 'there'"#.to_owned())),
            }
        );
        assert_eq!(
            parse(r"answers.q == 'it\'s'").unwrap().to_string(),
            r#"answers.q == "it's""#
        );
    }

    #[test]
    fn cyrillic_keys_and_texts_are_accepted() {
        assert!(parse("answers.бюджет == 'Большой'").is_ok());
    }

    #[test]
    fn display_is_canonical_and_minimally_parenthesised() {
        let canonical = |s: &str| parse(s).unwrap().to_string();
        assert_eq!(canonical("  score>=30  "), "score >= 30");
        assert_eq!(canonical("(a or b) and c"), "(a or b) and c");
        assert_eq!(canonical("a or (b and c)"), "a or b and c");
        assert_eq!(canonical("a and (b and c)"), "a and (b and c)");
        assert_eq!(canonical("not (score > 1)"), "not (score > 1)");
        assert_eq!(canonical("NOT facts.hot"), "not facts.hot");
        assert_eq!(canonical("facts.plain == 2.50"), "plain == 2.5");
        assert_eq!(canonical("temperature == 'hot'"), "temperature == \"hot\"");
    }

    #[test]
    fn missing_value_after_an_operator_names_the_operator_and_column() {
        assert_eq!(
            error("score >= "),
            "expected a value after '>=' at column 10"
        );
        assert_eq!(
            error("score >= )"),
            "expected a value after '>=' at column 10"
        );
    }

    #[test]
    fn missing_condition_after_and_is_reported() {
        assert_eq!(
            error("score > 1 and"),
            "expected a condition after 'and' at column 14"
        );
    }

    #[test]
    fn unknown_operators_are_named_with_a_hint() {
        assert_eq!(
            error("score => 30"),
            "unknown operator '=>' (did you mean '>='?) at column 7"
        );
        assert_eq!(
            error("score = 30"),
            "unknown operator '=' (use '==' to compare) at column 7"
        );
        assert_eq!(
            error("a && b"),
            "unknown operator '&&' (use 'and') at column 3"
        );
        assert_eq!(error("!a"), "unknown operator '!' (use 'not') at column 1");
    }

    #[test]
    fn unclosed_parenthesis_points_at_the_opening_one() {
        assert_eq!(error("a and (b or c"), "unclosed '(' at column 7");
    }

    #[test]
    fn unmatched_closing_parenthesis_is_reported() {
        assert_eq!(error("a)"), "unmatched ')' at column 2");
    }

    #[test]
    fn unterminated_string_points_at_its_quote() {
        assert_eq!(
            error("answers.x == \"abc"),
            "unterminated string at column 14"
        );
        assert_eq!(
            error("answers.x == 'abc\\'"),
            "unterminated string at column 14"
        );
    }

    #[test]
    fn unknown_escape_is_reported() {
        assert_eq!(
            error(r#"answers.x == "a\nb""#),
            r#"unknown escape '\n' (only \" \' and \\ are allowed) at column 16"#
        );
    }

    #[test]
    fn trailing_input_is_quoted() {
        assert_eq!(
            error("score >= 30 foo"),
            "trailing input 'foo' at column 13"
        );
        assert_eq!(error("a b"), "trailing input 'b' at column 3");
    }

    #[test]
    fn empty_condition_is_reported() {
        assert_eq!(error("   "), "the condition is empty at column 1");
        assert_eq!(error(""), "the condition is empty at column 1");
    }

    #[test]
    fn column_counts_characters_not_bytes() {
        assert_eq!(
            error("answers.имя == "),
            "expected a value after '==' at column 16"
        );
        assert_eq!(parse("answers.имя == ").unwrap_err().offset, 18);
    }

    #[test]
    fn not_before_a_comparison_is_refused_as_ambiguous() {
        assert_eq!(
            error("not answers.x == 'a'"),
            "'not' binds tighter than '==': write 'not (a == b)' to negate the comparison at column 1"
        );
    }

    #[test]
    fn not_applies_to_a_lone_variable_or_a_group() {
        assert_eq!(
            parse("not consent and score > 1").unwrap(),
            Expr::And(vec![
                Expr::Not(Box::new(Expr::Test(var("consent")))),
                Expr::Compare {
                    left: var("score"),
                    op: CmpOp::Gt,
                    right: Operand::Literal(Literal::Number(1.0)),
                },
            ])
        );
        assert!(parse("not (score > 1 or consent)").is_ok());
    }

    #[test]
    fn chained_comparisons_are_refused() {
        assert_eq!(
            error("1 < score < 10"),
            "comparisons cannot be chained; join them with 'and' at column 11"
        );
    }

    #[test]
    fn lone_constant_is_not_a_condition() {
        assert_eq!(
            error("hot"),
            "hot alone is not a condition; compare it, e.g. temperature == hot at column 1"
        );
        assert!(parse("30").is_err());
        assert!(parse("'yes'").is_err());
    }

    #[test]
    fn namespaces_need_a_key_and_unknown_ones_are_refused() {
        assert_eq!(
            error("answers == 1"),
            "'answers' needs a key, e.g. answers.budget at column 1"
        );
        assert_eq!(
            error("score.x"),
            "unknown variable 'score.x' (use answers.<key> or facts.<key>) at column 1"
        );
        assert_eq!(
            error("answers..x"),
            "'answers..x' has an empty part between dots at column 1"
        );
        assert_eq!(
            error("answers."),
            "'answers.' has an empty part between dots at column 1"
        );
    }

    #[test]
    fn malformed_numbers_are_refused() {
        assert_eq!(
            error("score > 1."),
            "expected digits after '.' at column 10"
        );
        assert!(parse(&format!("score > 1{}", "0".repeat(400))).is_err());
        assert!(parse("score > - 1").is_err());
    }

    #[test]
    fn parenthesised_condition_cannot_be_compared() {
        assert!(parse("(score) > 1").is_err());
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = format!("{}a{}", "(".repeat(1000), ")".repeat(1000));
        assert!(error(&deep).starts_with("the condition nests deeper than 64 levels"));
        let nots = format!("{}a", "not ".repeat(1000));
        assert!(error(&nots).starts_with("the condition nests deeper than 64 levels"));
        let ok = format!("{}a{}", "(".repeat(64), ")".repeat(64));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn long_chains_stay_flat() {
        let chain = vec!["a"; 500].join(" and ");
        match parse(&chain).unwrap() {
            Expr::And(list) => assert_eq!(list.len(), 500),
            other => panic!("expected a flat and, got {other:?}"),
        }
    }

    #[test]
    fn oversized_condition_is_refused() {
        let long = format!("a == '{}'", "x".repeat(5000));
        assert!(error(&long).starts_with("the condition is longer than 4096 bytes"));
    }

    fn key() -> impl Strategy<Value = String> {
        "[a-z_][a-z0-9_]{0,6}(\\.[a-z0-9_]{1,4})?"
    }

    fn operand() -> impl Strategy<Value = Operand> {
        prop_oneof![
            Just(Operand::Var(Var::Score)),
            Just(Operand::Var(Var::Temperature)),
            key().prop_map(|k| Operand::Var(Var::Answer(k))),
            key().prop_map(|k| Operand::Var(Var::Fact(k))),
            any::<bool>().prop_map(|b| Operand::Literal(Literal::Bool(b))),
            (-1.0e9..1.0e9f64).prop_map(|n| Operand::Literal(Literal::Number(n))),
            (-1000i32..1000).prop_map(|n| Operand::Literal(Literal::Number(f64::from(n)))),
            "\\PC{0,8}".prop_map(|t| Operand::Literal(Literal::Text(t))),
            prop_oneof![
                Just(Temperature::Cold),
                Just(Temperature::Warm),
                Just(Temperature::Hot)
            ]
            .prop_map(|t| Operand::Literal(Literal::Temperature(t))),
        ]
    }

    fn cmp_op() -> impl Strategy<Value = CmpOp> {
        prop_oneof![
            Just(CmpOp::Eq),
            Just(CmpOp::Ne),
            Just(CmpOp::Lt),
            Just(CmpOp::Le),
            Just(CmpOp::Gt),
            Just(CmpOp::Ge),
        ]
    }

    fn expr() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            key().prop_map(|k| Expr::Test(Operand::Var(Var::Fact(k)))),
            key().prop_map(|k| Expr::Test(Operand::Var(Var::Answer(k)))),
            any::<bool>().prop_map(|b| Expr::Test(Operand::Literal(Literal::Bool(b)))),
            (operand(), cmp_op(), operand()).prop_map(|(left, op, right)| Expr::Compare {
                left,
                op,
                right
            }),
        ];
        leaf.prop_recursive(5, 48, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                prop::collection::vec(inner, 2..4).prop_map(Expr::Or),
            ]
        })
    }

    /// Text made of the language's own tokens, so random input often parses.
    fn token_soup() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("score"),
            Just("temperature"),
            Just("answers.a"),
            Just("facts.hot"),
            Just("x"),
            Just("and"),
            Just("or"),
            Just("not"),
            Just("("),
            Just(")"),
            Just("=="),
            Just(">="),
            Just("<"),
            Just("!="),
            Just("hot"),
            Just("true"),
            Just("-3.5"),
            Just("30"),
            Just("'a\\'b'"),
            Just("\"q\""),
        ];
        prop::collection::vec(token, 0..12).prop_map(|tokens| tokens.join(" "))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn parse_never_panics_on_arbitrary_text(s in "\\PC{0,60}") {
            let _ = parse(&s);
        }

        #[test]
        fn display_of_any_expr_parses_back_to_it(e in expr()) {
            let text = e.to_string();
            prop_assert_eq!(parse(&text), Ok(e), "{}", text);
        }

        #[test]
        fn token_soup_either_fails_cleanly_or_round_trips(s in token_soup()) {
            match parse(&s) {
                Ok(e) => {
                    let text = e.to_string();
                    prop_assert_eq!(parse(&text), Ok(e), "{} → {}", s, text);
                }
                Err(err) => prop_assert!(err.offset <= s.len()),
            }
        }

        #[test]
        fn evaluation_never_panics_and_not_negates(e in expr(), n in -100.0..100.0f64, t in "\\PC{0,4}", b: bool) {
            let lookup = |v: &Var| match v {
                Var::Score => Value::Number(n),
                Var::Temperature => Value::Text(t.clone()),
                Var::Answer(_) => Value::Missing,
                Var::Fact(_) => Value::Bool(b),
            };
            let holds = e.eval(&lookup);
            prop_assert_eq!(Expr::Not(Box::new(e)).eval(&lookup), !holds);
        }
    }
}
