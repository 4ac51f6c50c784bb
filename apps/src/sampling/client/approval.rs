//! The human in the loop: MCP asks clients to let a person review a sampling request before it
//! reaches a model, and the completion before it reaches the server. With [`Approve::Ask`] both
//! checkpoints are prompts on the terminal (one request at a time, so prompts never interleave);
//! with [`Approve::Auto`] both pass unattended.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use super::llm::{Completion, Prompt};

/// Who approves.
#[derive(Clone, Debug)]
pub enum Approve {
    /// A person at this terminal.
    Ask(Arc<tokio::sync::Mutex<()>>),
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
        Ok(Approve::Ask(Arc::default()))
    }

    /// The first checkpoint: the request as the model will see it. `None` when rejected.
    pub async fn request(&self, mut prompt: Prompt) -> Option<Prompt> {
        let Approve::Ask(turn) = self else { return Some(prompt) };
        let _turn = turn.lock().await;
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
        match ask(shown, "Send to the model? [a]pprove, [e]dit the last message, [r]eject: ").await
        {
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
        let Approve::Ask(turn) = self else { return Some(completion) };
        let _turn = turn.lock().await;
        let shown = format!(
            "\n── completion from {} (stop: {:?})\n",
            completion.model, completion.stop_reason
        );
        match ask(shown, "Send this answer? [a]pprove, [e]dit, [r]eject: ").await {
            Choice::Approve => Some(completion),
            Choice::Edit(text) => {
                completion.text = text;
                Some(completion)
            }
            Choice::Reject => None,
        }
    }
}

/// Shows `shown`, asks `question` until it gets a, e (then the new text) or r.
async fn ask(shown: String, question: &'static str) -> Choice {
    let answered = tokio::task::spawn_blocking(move || {
        eprint!("{shown}");
        let stdin = std::io::stdin();
        loop {
            eprint!("{question}");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
                return Choice::Reject; // stdin closed: nobody approves
            }
            match line.trim() {
                "a" | "approve" | "" => return Choice::Approve,
                "r" | "reject" => return Choice::Reject,
                "e" | "edit" => {
                    eprint!("new text (one line): ");
                    let _ = std::io::stderr().flush();
                    let mut text = String::new();
                    let _ = stdin.lock().read_line(&mut text);
                    return Choice::Edit(text.trim_end_matches('\n').to_owned());
                }
                _ => {}
            }
        }
    })
    .await;
    answered.unwrap_or(Choice::Reject)
}
