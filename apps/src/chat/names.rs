//! What a room name, a nickname and a message may be.

use super::error::ChatError;

/// Longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 1000;
/// Longest nickname, in characters.
pub const MAX_NICK_CHARS: usize = 24;
/// Longest room name, in characters.
pub const MAX_ROOM_CHARS: usize = 32;

/// Room names: 1 to 32 of `a-z`, `0-9`, `-` and `_` (they appear in URLs as they are).
pub fn room(name: &str) -> Result<&str, ChatError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_ROOM_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid { Ok(name) } else { Err(ChatError::InvalidRoom) }
}

/// Nicknames: 1 to 24 letters, digits, spaces, `-`, `_` or `.`, trimmed; returned trimmed.
pub fn nick(nick: &str) -> Result<&str, ChatError> {
    let nick = nick.trim();
    let count = nick.chars().count();
    let valid = (1..=MAX_NICK_CHARS).contains(&count)
        && nick.chars().all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'));
    if valid { Ok(nick) } else { Err(ChatError::InvalidNick) }
}

/// Nicknames are unique within a room regardless of case.
pub fn nick_key(nick: &str) -> String {
    nick.to_lowercase()
}

/// Message text: 1 to 1000 characters after trimming, no control characters but line breaks and
/// tabs; CRLF and CR line breaks become LF. Returned trimmed.
pub fn message(text: &str) -> Result<String, ChatError> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let text = text.trim();
    if text.is_empty() {
        return Err(ChatError::EmptyMessage);
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ChatError::MessageTooLong);
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ChatError::ControlCharacters);
    }
    Ok(text.to_owned())
}

/// Idempotency keys: 1 to 64 printable ASCII characters.
pub fn client_msg_id(id: &str) -> Result<&str, ChatError> {
    if (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(id)
    } else {
        Err(ChatError::InvalidClientMsgId)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    use super::*;

    #[test]
    fn rooms() {
        assert!(room("general").is_ok() && room("dev-2_b").is_ok());
        for bad in ["", "General", "a b", "a/b", "é", &"x".repeat(33)] {
            assert!(room(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nicks() {
        assert_eq!(nick("  Ada L. ").ok(), Some("Ada L."));
        assert!(nick("Zoë_9").is_ok());
        for bad in ["", "   ", "<script>", "a\u{0}b", "tab\there", &"x".repeat(25)] {
            assert!(nick(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages() {
        assert_eq!(message(" hi\n there ").ok().as_deref(), Some("hi\n there"));
        assert_eq!(message("a\r\nb\rc").ok().as_deref(), Some("a\nb\nc"));
        assert!(message(&"é".repeat(1000)).is_ok());
        assert!(message(&"é".repeat(1001)).is_err());
        assert!(message(" \n ").is_err());
        assert!(message("bell\u{7}").is_err());
        assert!(message("<b>not markup</b>").is_ok(), "markup is text; the page renders it inert");
    }
}
