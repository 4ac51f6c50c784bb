//! The human in the loop: MCP asks clients to let a person review a sampling request before it
//! reaches a model, and the completion before it reaches the server. With [`Approve::Ask`] both
//! checkpoints are prompts on the terminal (one request at a time, so prompts never interleave);
//! with [`Approve::Auto`] both pass unattended.
//!
//! Lines are read by one thread of their own and handed over a channel, so a prompt whose request
//! is cancelled stops waiting at once and takes no line the next prompt should get (a blocking
//! read on tokio's pool could not be abandoned, and would also hold up the process's exit).
//!
//! A bare Enter approves, and each question says so ([`question`]): a default the person cannot
//! see is one they can trigger without meaning to.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::llm::{Completion, Prompt};
use super::outcome::Checkpoint;

/// Lines typed at the terminal, read by a thread of their own.
#[derive(Debug)]
pub struct Lines(tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<String>>);

impl Lines {
    fn start() -> Lines {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Lines(tokio::sync::Mutex::new(receiver))
    }

    /// Lines from a channel instead of the terminal (for tests, and for front ends of one's own).
    pub fn from_channel(receiver: tokio::sync::mpsc::UnboundedReceiver<String>) -> Lines {
        Lines(tokio::sync::Mutex::new(receiver))
    }
}

/// Who approves.
#[derive(Clone, Debug)]
pub enum Approve {
    /// A person at this terminal (one prompt at a time).
    Ask(Arc<Lines>),
    /// Nobody: everything passes.
    Auto,
}

/// What the person chose.
enum Choice {
    Approve,
    Edit(String),
    Reject,
}

impl Approve {
    /// `ask` (only when stdin is a terminal) or `auto`.
    pub fn from_flag(auto: bool) -> Result<Approve, String> {
        if auto {
            return Ok(Approve::Auto);
        }
        if !std::io::stdin().is_terminal() {
            return Err("stdin is not a terminal, so nobody can approve requests: pass --approve auto to answer without asking".to_owned());
        }
        Ok(Approve::Ask(Arc::new(Lines::start())))
    }

    /// The first checkpoint: the request as the model will see it. `None` when rejected.
    pub async fn request(&self, mut prompt: Prompt) -> Option<Prompt> {
        let Approve::Ask(lines) = self else { return Some(prompt) };
        let mut shown = format!(
            "\n── sampling request → model {} (max {} tokens)\n",
            prompt.model, prompt.max_tokens
        );
        if let Some(system) = &prompt.system {
            shown.push_str(&format!("system: {system}\n"));
        }
        for (role, text) in &prompt.messages {
            shown.push_str(&format!("{role}: {text}\n"));
        }
        match ask(lines, shown, question(Checkpoint::Request)).await {
            Choice::Approve => Some(prompt),
            Choice::Edit(text) => {
                if let Some(last) = prompt.messages.last_mut() {
                    last.1 = text;
                }
                Some(prompt)
            }
            Choice::Reject => None,
        }
    }

    /// Prints tokens as they stream in (when a person is watching).
    pub fn token_printer(&self) -> impl FnMut(&str) + Send + 'static {
        let watching = matches!(self, Approve::Ask(_));
        move |piece: &str| {
            if watching {
                eprint!("{piece}");
                let _ = std::io::stderr().flush();
            }
        }
    }

    /// The second checkpoint: the completion before it goes back. `None` when rejected.
    pub async fn completion(&self, mut completion: Completion) -> Option<Completion> {
        let Approve::Ask(lines) = self else { return Some(completion) };
        // The text itself was shown as it streamed in.
        let shown = format!("\n── completion from {}\n", completion.summary());
        match ask(lines, shown, question(Checkpoint::Completion)).await {
            Choice::Approve => Some(completion),
            Choice::Edit(text) => {
                completion.text = text;
                Some(completion)
            }
            Choice::Reject => None,
        }
    }
}

impl Approve {
    /// A form a server asks the person to fill in (`elicitation/create`, form mode), and the
    /// `ElicitResult` to send back: `accept` with the fields typed, `decline` or `cancel`.
    /// Unattended, every form is declined: nobody is there to answer, and the server then goes
    /// on without (this app's `summarize` uses its default length).
    pub async fn form(&self, message: &str, schema: &Value) -> Value {
        let Approve::Ask(lines) = self else { return json!({ "action": "decline" }) };
        let mut receiver = lines.0.lock().await;
        let cancel = json!({ "action": "cancel" });
        eprint!("\n── the server asks: {message}\n");
        loop {
            eprint!("Answer it? [A]nswer, [d]ecline, [c]ancel (Enter answers): ");
            let _ = std::io::stderr().flush();
            let Some(line) = receiver.recv().await else { return cancel };
            match line.trim().to_ascii_lowercase().as_str() {
                "a" | "answer" | "" => break,
                "d" | "decline" => return json!({ "action": "decline" }),
                "c" | "cancel" => return cancel,
                _ => {}
            }
        }
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut content = Map::new();
        let fields =
            schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
        for (name, field) in &fields {
            let question = field_question(name, field);
            loop {
                eprint!("{question}");
                let _ = std::io::stderr().flush();
                let Some(line) = receiver.recv().await else { return cancel };
                match field_value(field, line.trim()) {
                    Ok(Some(value)) => {
                        content.insert(name.clone(), value);
                        break;
                    }
                    Ok(None) if !required.contains(&name.as_str()) => break,
                    _ => {}
                }
            }
        }
        json!({ "action": "accept", "content": content })
    }
}

/// How a form field is asked: its title, its choices, its default (Enter takes it).
fn field_question(name: &str, field: &Value) -> String {
    let title = field.get("title").and_then(Value::as_str).unwrap_or(name);
    let choices = field
        .get("enum")
        .and_then(Value::as_array)
        .map(|c| format!(" ({})", c.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("/")))
        .unwrap_or_default();
    let default = field.get("default").map(|d| format!(" [{}]", shown(d))).unwrap_or_default();
    format!("{title}{choices}{default}: ")
}

/// A typed answer for `field`: its value, `None` when left empty without a default, or an error
/// (then the field is asked again).
fn field_value(field: &Value, typed: &str) -> Result<Option<Value>, ()> {
    if typed.is_empty() {
        return Ok(field.get("default").cloned());
    }
    let value = match field.get("type").and_then(Value::as_str) {
        Some("integer" | "number") => {
            serde_json::from_str::<serde_json::Number>(typed).map(Value::Number).map_err(|_| ())?
        }
        Some("boolean") => match typed.to_ascii_lowercase().as_str() {
            "y" | "yes" | "true" => Value::Bool(true),
            "n" | "no" | "false" => Value::Bool(false),
            _ => return Err(()),
        },
        _ => Value::String(typed.to_owned()),
    };
    match field.get("enum").and_then(Value::as_array) {
        Some(choices) if !choices.contains(&value) => Err(()),
        _ => Ok(Some(value)),
    }
}

fn shown(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}

/// The question asked at a checkpoint. The capital marks the default, and the words say what
/// Enter does, because that default is approval.
pub fn question(checkpoint: Checkpoint) -> &'static str {
    match checkpoint {
        Checkpoint::Request => {
            "Send to the model? [A]pprove, [e]dit the last message, [r]eject (Enter approves): "
        }
        Checkpoint::Completion => {
            "Send this answer to the server? [A]pprove, [e]dit, [r]eject (Enter approves): "
        }
    }
}

/// Shows `shown`, asks `question` until it gets a, e (then the new text) or r. One prompt at a
/// time: the lines' lock is held from the question to the answer.
async fn ask(lines: &Lines, shown: String, question: &'static str) -> Choice {
    let mut receiver = lines.0.lock().await;
    eprint!("{shown}");
    loop {
        eprint!("{question}");
        let _ = std::io::stderr().flush();
        let Some(line) = receiver.recv().await else {
            return Choice::Reject; // stdin closed: nobody approves
        };
        match line.trim().to_ascii_lowercase().as_str() {
            "a" | "approve" | "" => return Choice::Approve,
            "r" | "reject" => return Choice::Reject,
            "e" | "edit" => {
                eprint!("new text (one line): ");
                let _ = std::io::stderr().flush();
                return Choice::Edit(receiver.recv().await.unwrap_or_default());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn prompt() -> Prompt {
        Prompt {
            system: None,
            messages: vec![("user".into(), "original".into())],
            max_tokens: 10,
            temperature: None,
            stop: vec![],
            model: "m".into(),
        }
    }

    #[tokio::test]
    async fn a_person_approves_edits_or_rejects_at_both_checkpoints() {
        let (typed, lines) = tokio::sync::mpsc::unbounded_channel();
        let approve = Approve::Ask(Arc::new(Lines::from_channel(lines)));
        for line in ["e", "edited", "x", "a", "r"] {
            typed.send(line.to_owned()).unwrap();
        }
        let edited = approve.request(prompt()).await.unwrap();
        assert_eq!(edited.messages[0].1, "edited");
        let completion = Completion {
            text: "t".into(),
            model: "m".into(),
            stop_reason: None,
            usage: Default::default(),
        };
        // "x" is not an answer: asked again, then approved.
        assert_eq!(approve.completion(completion.clone()).await, Some(completion.clone()));
        assert_eq!(approve.request(prompt()).await, None, "rejected");
        drop(typed);
        assert_eq!(approve.completion(completion).await, None, "stdin closed: nobody approves");
    }

    #[tokio::test]
    async fn each_question_shows_its_default_and_a_bare_enter_does_what_it_says() {
        for checkpoint in [Checkpoint::Request, Checkpoint::Completion] {
            let asked = question(checkpoint);
            assert!(asked.contains("[A]pprove") && asked.contains("(Enter approves)"), "{asked}");
        }
        let (typed, lines) = tokio::sync::mpsc::unbounded_channel();
        let approve = Approve::Ask(Arc::new(Lines::from_channel(lines)));
        typed.send(String::new()).unwrap();
        assert_eq!(approve.request(prompt()).await, Some(prompt()), "Enter approved the request");
        let completion = Completion {
            text: "t".into(),
            model: "m".into(),
            stop_reason: Some("endTurn".into()),
            usage: Default::default(),
        };
        typed.send("  ".into()).unwrap();
        assert_eq!(approve.completion(completion.clone()).await, Some(completion));
    }

    #[tokio::test]
    async fn a_person_fills_declines_or_cancels_a_form_and_nobody_declines_unattended() {
        let schema = serde_json::json!({"type": "object", "required": ["length"], "properties": {
            "length": {"type": "string", "enum": ["short", "long"], "default": "short"},
            "count": {"type": "integer"}}});
        let (typed, lines) = tokio::sync::mpsc::unbounded_channel();
        let approve = Approve::Ask(Arc::new(Lines::from_channel(lines)));
        // "epic" is not a choice and "x" not an integer: each is asked again.
        for line in ["", "x", "3", "epic", "long", "d", "c"] {
            typed.send(line.to_owned()).unwrap();
        }
        let answered = approve.form("How long?", &schema).await;
        assert_eq!(
            answered,
            serde_json::json!({"action": "accept", "content": {"count": 3, "length": "long"}})
        );
        assert_eq!(approve.form("again", &schema).await["action"], "decline");
        assert_eq!(approve.form("again", &schema).await["action"], "cancel");
        assert_eq!(Approve::Auto.form("unattended", &schema).await["action"], "decline");
    }

    #[test]
    fn a_completion_is_shown_with_its_stop_reason_in_words() {
        let mut completion = Completion {
            text: "t".into(),
            model: "claude-haiku-4-5".into(),
            stop_reason: Some("endTurn".into()),
            usage: crate::sampling::client::llm::Usage { input: Some(12), output: Some(3) },
        };
        assert_eq!(completion.summary(), "claude-haiku-4-5, 12 in / 3 out tokens, stop: endTurn");
        completion.stop_reason = None;
        assert_eq!(
            completion.summary(),
            "claude-haiku-4-5, 12 in / 3 out tokens",
            "nothing when absent"
        );
    }
}
