//! Keeping secrets out of logs: message tracing shows frames and bodies with the values of secret
//! JSON members replaced.

use std::borrow::Cow;

/// JSON member names whose string values are secrets (session ids are bearer credentials).
const SECRET_KEYS: &[&str] =
    &["session_id", "token", "api_key", "apiKey", "authorization", "password"];

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
    out.map_or(Cow::Borrowed(text), Cow::Owned)
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
    fn redacts_every_secret_member_and_nothing_else() {
        let text = r#"{"token":"a\"b","x":"token","api_key":"k","n":1}"#;
        assert_eq!(
            redact_secrets(text),
            r#"{"token":"<redacted>","x":"token","api_key":"<redacted>","n":1}"#
        );
        assert!(matches!(redact_secrets("plain"), Cow::Borrowed(_)));
    }
}
