//! Keeping secrets out of logs: message tracing shows frames and bodies with the values of secret
//! JSON members replaced.

use std::borrow::Cow;

/// JSON member names whose string values are secrets (session ids are bearer credentials).
const SECRET_KEYS: &[&str] =
    &["session_id", "sessionId", "token", "api_key", "apiKey", "authorization", "password"];

/// Query parameters whose values are secrets, wherever a URL appears in text (the 2024-11-05
/// MCP transport's `endpoint` event is `/sampling/messages?sessionId=…`).
const SECRET_PARAMS: &[&str] = &["sessionId", "session_id", "token"];

/// `text` with the string value of every secret member replaced by `"<redacted>"`.
///
/// ```
/// use sse_core::edge::redact_secrets;
/// let line = r#"{"session_id":"9f1c2e","client_id":"demo"}"#;
/// assert_eq!(redact_secrets(line), r#"{"session_id":"<redacted>","client_id":"demo"}"#);
/// ```
pub fn redact_secrets(text: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    for key in SECRET_KEYS {
        let needle = format!("\"{key}\":\"");
        let source = out.as_deref().unwrap_or(text);
        if !source.contains(&needle) {
            continue;
        }
        let mut result = String::with_capacity(source.len());
        let mut rest = source;
        while let Some(at) = rest.find(&needle) {
            let value_start = at + needle.len();
            result.push_str(&rest[..value_start]);
            result.push_str("<redacted>\"");
            let value = &rest[value_start..];
            rest = match closing_quote(value) {
                Some(end) => &value[end + 1..],
                None => "",
            };
        }
        result.push_str(rest);
        out = Some(result);
    }
    for param in SECRET_PARAMS {
        let source = out.as_deref().unwrap_or(text);
        if let Some(redacted) = redact_param(source, param) {
            out = Some(redacted);
        }
    }
    out.map_or(Cow::Borrowed(text), Cow::Owned)
}

/// `text` with the value of every `?param=` or `&param=` replaced, or `None` when it has none.
fn redact_param(text: &str, param: &str) -> Option<String> {
    let found = |at: usize| at > 0 && matches!(text.as_bytes()[at - 1], b'?' | b'&');
    let needle = format!("{param}=");
    let mut starts = text.match_indices(&needle).map(|(at, _)| at).filter(|&at| found(at));
    let first = starts.next()?;
    let mut result = String::with_capacity(text.len());
    let mut rest_from = 0;
    for at in std::iter::once(first).chain(starts) {
        let value_start = at + needle.len();
        if value_start < rest_from {
            continue;
        }
        result.push_str(&text[rest_from..value_start]);
        result.push_str("<redacted>");
        let value = &text[value_start..];
        let end = value
            .find(|c: char| matches!(c, '&' | '"' | '\'' | '#') || c.is_whitespace())
            .unwrap_or(value.len());
        rest_from = value_start + end;
    }
    result.push_str(&text[rest_from..]);
    Some(result)
}

/// The index of the quote that ends a JSON string body (skipping escaped quotes).
fn closing_quote(value: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_query_parameters_in_urls_are_redacted() {
        let frame = "event: endpoint\ndata: /sampling/messages?sessionId=8b95c1&x=1\n\n";
        assert_eq!(
            redact_secrets(frame),
            "event: endpoint\ndata: /sampling/messages?sessionId=<redacted>&x=1\n\n"
        );
        let url = r#"{"url":"http://h/dashboard?a=1&token=abc#top"}"#;
        assert_eq!(redact_secrets(url), r#"{"url":"http://h/dashboard?a=1&token=<redacted>#top"}"#);
        // A word that only ends like one is left alone.
        assert_eq!(redact_secrets("mytoken=abc"), "mytoken=abc");
    }

    #[test]
    fn redacts_every_secret_member_and_nothing_else() {
        let text = r#"{"token":"a\"b","x":"token","api_key":"k","n":1}"#;
        assert_eq!(
            redact_secrets(text),
            r#"{"token":"<redacted>","x":"token","api_key":"<redacted>","n":1}"#
        );
        assert!(matches!(redact_secrets("plain"), Cow::Borrowed(_)));
    }
}
