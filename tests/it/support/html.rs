//! Telegram's HTML parse mode: turns marked-up text into the text a user sees plus entities,
//! or the `can't parse entities` error Telegram would answer.
//!
//! Modelled on tdlib's `parse_html` (td/telegram/MessageEntity.cpp), with one deliberate
//! difference: a bare `&` that starts no entity is an error here, while Telegram keeps it.
//! A bot that forgets to escape user text usually leaks `&` long before `<`, so the fake
//! makes that mistake fail loudly.

use serde_json::{Value, json};

/// Tags Telegram accepts in HTML parse mode.
const SUPPORTED_TAGS: &[&str] = &[
    "a",
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "tg-emoji",
    "code",
    "pre",
    "blockquote",
];

/// Text after entity parsing, as the recipient sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The visible text, markup removed and HTML entities decoded.
    pub text: String,
    /// `MessageEntity` objects with UTF-16 offsets, as Telegram returns them.
    pub entities: Vec<Value>,
}

struct OpenTag {
    name: String,
    offset: usize,
    attribute: Option<String>,
}

/// Parses `html` as Telegram's HTML parse mode does; the error is the part after
/// `Bad Request: can't parse entities: `.
pub fn parse(html: &str) -> Result<Parsed, String> {
    let bytes = html.as_bytes();
    let mut text = String::with_capacity(html.len());
    let mut utf16 = 0usize;
    let mut stack: Vec<OpenTag> = Vec::new();
    let mut entities: Vec<Value> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'&' => {
                let Some((ch, len)) = decode_entity(&html[i..]) else {
                    return Err(format!("Unescaped \"&\" at byte offset {i}"));
                };
                text.push(ch);
                utf16 += ch.len_utf16();
                i += len;
            }
            b'<' if bytes.get(i + 1) == Some(&b'/') => {
                let begin = i;
                i += 2;
                let name_start = i;
                while i < bytes.len() && !is_space(bytes[i]) && bytes[i] != b'>' {
                    i += 1;
                }
                let name = html[name_start..i].to_ascii_lowercase();
                while i < bytes.len() && is_space(bytes[i]) {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] != b'>' {
                    return Err(format!("Unclosed end tag at byte offset {begin}"));
                }
                i += 1;
                let Some(open) = stack.pop() else {
                    return Err(format!("Unexpected end tag at byte offset {begin}"));
                };
                if !name.is_empty() && name != open.name {
                    return Err(format!(
                        "Unmatched end tag at byte offset {begin}, expected \"</{}>\", found \"</{name}>\"",
                        open.name
                    ));
                }
                if utf16 > open.offset {
                    entities.push(entity(&open, utf16 - open.offset));
                }
            }
            b'<' => {
                let begin = i;
                let (open, next) = parse_start_tag(html, begin, utf16)?;
                stack.push(open);
                i = next;
            }
            _ => {
                let Some(ch) = html[i..].chars().next() else {
                    break;
                };
                text.push(ch);
                utf16 += ch.len_utf16();
                i += ch.len_utf8();
            }
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{}\"",
            open.name
        ));
    }
    entities.sort_by_key(|e| {
        (
            e["offset"].as_u64().unwrap_or(0),
            u64::MAX - e["length"].as_u64().unwrap_or(0),
        )
    });
    Ok(Parsed { text, entities })
}

/// Parses `<tag attr="value" ...>` starting at `begin`; returns the open tag and the byte
/// offset after `>`.
fn parse_start_tag(html: &str, begin: usize, utf16: usize) -> Result<(OpenTag, usize), String> {
    let bytes = html.as_bytes();
    let mut i = begin + 1;
    while i < bytes.len() && !is_space(bytes[i]) && bytes[i] != b'>' {
        i += 1;
    }
    if i >= bytes.len() {
        return Err(format!("Unclosed start tag at byte offset {begin}"));
    }
    let name = html[begin + 1..i].to_ascii_lowercase();
    if !SUPPORTED_TAGS.contains(&name.as_str()) {
        return Err(format!(
            "Unsupported start tag \"{name}\" at byte offset {begin}"
        ));
    }
    let mut attributes: Vec<(String, String)> = Vec::new();
    loop {
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        if i >= bytes.len() {
            return Err(format!("Unclosed start tag at byte offset {begin}"));
        }
        if bytes[i] == b'>' {
            i += 1;
            break;
        }
        let attr_start = i;
        while i < bytes.len() && !is_space(bytes[i]) && bytes[i] != b'=' && bytes[i] != b'>' {
            i += 1;
        }
        let attr = html[attr_start..i].to_ascii_lowercase();
        if attr.is_empty() {
            return Err(format!(
                "Empty attribute name in the tag \"{name}\" at byte offset {begin}"
            ));
        }
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            attributes.push((attr, String::new()));
            continue;
        }
        i += 1;
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        if i >= bytes.len() {
            return Err(format!("Unclosed start tag at byte offset {begin}"));
        }
        let value = if bytes[i] == b'"' || bytes[i] == b'\'' {
            let quote = bytes[i];
            let value_start = i + 1;
            let Some(len) = bytes[value_start..].iter().position(|&b| b == quote) else {
                return Err(format!("Unclosed start tag at byte offset {begin}"));
            };
            i = value_start + len + 1;
            decode_attribute(&html[value_start..value_start + len])
        } else {
            let value_start = i;
            while i < bytes.len() && !is_space(bytes[i]) && bytes[i] != b'>' {
                i += 1;
            }
            decode_attribute(&html[value_start..i])
        };
        attributes.push((attr, value));
    }
    let find = |key: &str| {
        attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let attribute = match name.as_str() {
        "a" => find("href"),
        "span" => {
            if find("class").as_deref() != Some("tg-spoiler") {
                return Err(format!(
                    "Tag \"span\" must have class \"tg-spoiler\" at byte offset {begin}"
                ));
            }
            None
        }
        "tg-emoji" => {
            let Some(id) = find("emoji-id") else {
                return Err(format!(
                    "Tag \"tg-emoji\" must have attribute \"emoji-id\" at byte offset {begin}"
                ));
            };
            Some(id)
        }
        "code" => find("class").and_then(|c| c.strip_prefix("language-").map(str::to_owned)),
        "blockquote" => find("expandable").map(|_| String::new()),
        _ => None,
    };
    Ok((
        OpenTag {
            name,
            offset: utf16,
            attribute,
        },
        i,
    ))
}

fn entity(open: &OpenTag, length: usize) -> Value {
    let kind = match open.name.as_str() {
        "b" | "strong" => "bold",
        "i" | "em" => "italic",
        "u" | "ins" => "underline",
        "s" | "strike" | "del" => "strikethrough",
        "span" | "tg-spoiler" => "spoiler",
        "a" => "text_link",
        "tg-emoji" => "custom_emoji",
        "code" => "code",
        "pre" => "pre",
        "blockquote" if open.attribute.is_some() => "expandable_blockquote",
        _ => "blockquote",
    };
    let mut value = json!({"type": kind, "offset": open.offset, "length": length});
    match (kind, &open.attribute) {
        ("text_link", Some(url)) => value["url"] = json!(url),
        ("custom_emoji", Some(id)) => value["custom_emoji_id"] = json!(id),
        ("code", Some(language)) => value["language"] = json!(language),
        _ => {}
    }
    value
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c')
}

/// Decodes `&lt;`, `&gt;`, `&amp;`, `&quot;` and numeric references at the start of `s`;
/// returns the character and the bytes consumed.
fn decode_entity(s: &str) -> Option<(char, usize)> {
    let end = s.find(';')?;
    let name = &s[1..end];
    let ch = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        _ => {
            let code = if let Some(hex) = name.strip_prefix("#x").or(name.strip_prefix("#X")) {
                u32::from_str_radix(hex, 16).ok()?
            } else {
                name.strip_prefix('#')?.parse::<u32>().ok()?
            };
            char::from_u32(code).filter(|&c| c != '\0')?
        }
    };
    Some((ch, end + 1))
}

/// Attribute values may contain entities too; an undecodable `&` is kept as typed there.
fn decode_attribute(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        match decode_entity(&rest[pos..]) {
            Some((ch, len)) => {
                out.push(ch);
                rest = &rest[pos + len..];
            }
            None => {
                out.push('&');
                rest = &rest[pos + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for HTML parse mode, as a correct bot must do with user-supplied text.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Number of UTF-16 code units, which is how Telegram counts message length.
pub fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bold_and_link_become_entities_with_visible_text() {
        let parsed = parse("Hi <b>Ann</b>, see <a href=\"https://x.org/?a=1&amp;b=2\">this</a>")
            .expect("valid html");
        assert_eq!(parsed.text, "Hi Ann, see this");
        assert_eq!(
            parsed.entities,
            vec![
                json!({"type": "bold", "offset": 3, "length": 3}),
                json!({"type": "text_link", "offset": 12, "length": 4, "url": "https://x.org/?a=1&b=2"}),
            ]
        );
    }

    #[test]
    fn entity_offsets_count_utf16_code_units() {
        let parsed = parse("😀 <i>ok</i>").expect("valid html");
        assert_eq!(parsed.entities[0]["offset"], 3);
    }

    #[test]
    fn escaped_characters_are_decoded() {
        let parsed = parse("&lt;b&gt; &amp; &quot; &#65;&#x42;").expect("valid html");
        assert_eq!(parsed.text, "<b> & \" AB");
    }

    #[test]
    fn unknown_tag_is_rejected() {
        let err = parse("a <br> b").expect_err("br is not supported");
        assert_eq!(err, "Unsupported start tag \"br\" at byte offset 2");
    }

    #[test]
    fn bare_less_than_is_rejected() {
        let err = parse("1 < 2").expect_err("bare < starts a tag");
        assert_eq!(err, "Unsupported start tag \"\" at byte offset 2");
    }

    #[test]
    fn bare_ampersand_is_rejected() {
        assert!(parse("Tom & Jerry").is_err());
        assert!(parse("&nbsp;").is_err());
    }

    #[test]
    fn unclosed_tag_is_rejected() {
        let err = parse("<b>bold").expect_err("b is never closed");
        assert_eq!(err, "Can't find end tag corresponding to start tag \"b\"");
    }

    #[test]
    fn mismatched_end_tag_is_rejected() {
        let err = parse("<b><i>x</b></i>").expect_err("wrong nesting");
        assert!(
            err.starts_with("Unmatched end tag at byte offset 7"),
            "{err}"
        );
    }

    #[test]
    fn end_tag_without_start_is_rejected() {
        assert_eq!(
            parse("x</b>"),
            Err("Unexpected end tag at byte offset 1".to_owned())
        );
    }

    #[test]
    fn span_needs_the_spoiler_class() {
        assert!(parse("<span class=\"tg-spoiler\">s</span>").is_ok());
        assert!(parse("<span>s</span>").is_err());
    }

    #[test]
    fn all_telegram_tags_are_accepted() {
        let html = "<b>1</b><strong>2</strong><i>3</i><em>4</em><u>5</u><ins>6</ins><s>7</s>\
            <strike>8</strike><del>9</del><tg-spoiler>a</tg-spoiler><code>b</code>\
            <pre><code class=\"language-rust\">c</code></pre><blockquote expandable>d</blockquote>\
            <tg-emoji emoji-id=\"5368324170671202286\">👍</tg-emoji>";
        let parsed = parse(html).expect("all supported");
        assert_eq!(parsed.text, "123456789abcd👍");
    }

    #[test]
    fn escaping_user_text_makes_it_parse_as_typed() {
        let name = "<b>Boss</b> & *_[";
        let parsed = parse(&escape(name)).expect("escaped text parses");
        assert_eq!(parsed.text, name);
        assert!(parsed.entities.is_empty());
    }
}
