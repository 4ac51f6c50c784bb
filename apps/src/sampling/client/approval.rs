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
