//! A run's output as events: every chunk gets the next id and is kept (up to the run's cap) so
//! any viewer, at any time, can replay it exactly from the start or from its `Last-Event-ID`.
//!
//! The log is the source of truth and the live topic only carries what is appended after a
//! viewer subscribed: appending and subscribing take the same lock, as in the dashboard's board.
//! Output past the cap is counted, never silently lost: the count goes out as a `dropped` event
//! before `exit`. When the run ends its topic is dropped, which ends every live stream after the
//! `exit` event.

use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};
use sse_core::hub::{Resume, Subscription, Topic, TopicConfig};
use sse_core::metrics::Metrics;
use sse_core::wire::{Event, Frame};

/// The end of stderr kept to explain an exit (a `MemoryError`, a failed fork).
const TAIL: usize = 4096;
/// What one kept event costs beyond its frame (the log entry and allocation), counted against
/// the cap so that a program writing one byte at a time cannot make the log many times the cap.
const EVENT_OVERHEAD: u64 = 64;

/// Which pipe a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipe {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A run's output log and live topic.
#[derive(Debug)]
pub struct Output {
    state: Mutex<State>,
    cap: u64,
}

#[derive(Debug)]
struct State {
    log: Vec<(u64, Frame)>,
    last_id: u64,
    /// Text bytes kept.
    kept: u64,
    /// What the log holds: frames plus the per-event overhead.
    stored: u64,
    dropped: u64,
    /// Bytes of an unfinished UTF-8 character at the end of each pipe's last read.
    partial: [Vec<u8>; 2],
    stderr_tail: String,
    topic: Option<Topic>,
    finished: bool,
}

/// What a new viewer gets: the frames it missed, then (while the run lives) a live subscription.
#[derive(Debug)]
pub struct Replay {
    /// Logged frames after the viewer's id.
    pub frames: Vec<Frame>,
    /// New frames as they come; `None` once the run has ended.
    pub live: Option<Subscription>,
}

impl Output {
    /// An empty log keeping at most `cap` bytes of output.
    pub fn new(cap: u64, metrics: Metrics) -> Output {
        let config = TopicConfig { replay: 0, ..TopicConfig::default() };
        Output {
            state: Mutex::new(State {
                log: Vec::new(),
                last_id: 0,
                kept: 0,
                stored: 0,
                dropped: 0,
                partial: [Vec::new(), Vec::new()],
                stderr_tail: String::new(),
                topic: Some(Topic::starting_after(config, metrics, 0)),
                finished: false,
            }),
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends bytes read from `pipe`: as text (a character split across reads is joined;
    /// invalid UTF-8 becomes U+FFFD), or counted as dropped past the cap. The cap is on what
    /// the log stores: each event's frame plus a fixed overhead. Nothing is appended after the
    /// log has ended.
    pub fn append(&self, pipe: Pipe, bytes: &[u8]) {
        let mut state = self.lock();
        if state.finished {
            return;
        }
        let index = pipe as usize;
        let mut pending = std::mem::take(&mut state.partial[index]);
        pending.extend_from_slice(bytes);
        let complete = complete_utf8_prefix(&pending);
        let rest = pending.split_off(complete);
        state.partial[index] = rest;
        if pending.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&pending).into_owned();
        if pipe == Pipe::Stderr {
            state.stderr_tail.push_str(&text);
            if state.stderr_tail.len() > TAIL {
                let cut = state.stderr_tail.len() - TAIL;
                let cut = (cut..state.stderr_tail.len())
                    .find(|i| state.stderr_tail.is_char_boundary(*i))
                    .unwrap_or(0);
                state.stderr_tail.drain(..cut);
            }
        }
        // Room for text: what is left of the cap, less the event's own cost (its frame's name,
        // id and JSON around the text, and the overhead).
        let room = self.cap.saturating_sub(state.stored).saturating_sub(EVENT_OVERHEAD + 48);
        if room == 0 {
            state.dropped += text.len() as u64;
            return;
        }
        let text = if (text.len() as u64) <= room {
            text
        } else {
            let mut end = room as usize;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            state.dropped += (text.len() - end) as u64;
            text[..end].to_owned()
        };
        state.kept += text.len() as u64;
        let name = match pipe {
            Pipe::Stdout => "stdout",
            Pipe::Stderr => "stderr",
        };
        publish(&mut state, name, &json!({ "text": text }));
    }

    /// The last 4 KiB of stderr.
    pub fn stderr_tail(&self) -> String {
        self.lock().stderr_tail.clone()
    }

    /// Bytes kept and bytes dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.lock();
        (state.kept, state.dropped)
    }

    /// Ends the log: flushes split characters, reports dropped bytes, appends `exit` and ends the
    /// live streams.
    pub fn finish(&self, exit: &Value) {
        for pipe in [Pipe::Stdout, Pipe::Stderr] {
            let leftover = std::mem::take(&mut self.lock().partial[pipe as usize]);
            if !leftover.is_empty() {
                // Not valid UTF-8 on its own: append turns it into U+FFFD.
                self.append_lossy(pipe, &leftover);
            }
        }
        let mut state = self.lock();
        if state.dropped > 0 {
            let dropped = state.dropped;
            let message =
                format!("{dropped} bytes dropped (output past {} bytes is not kept)", self.cap);
            publish(&mut state, "dropped", &json!({ "bytes": dropped, "message": message }));
        }
        publish(&mut state, "exit", exit);
        close(&mut state);
    }

    /// Appends an event of any type (a workflow's progress, say), unless the log has ended.
    pub fn event(&self, name: &str, data: &Value) {
        let mut state = self.lock();
        if !state.finished {
            publish(&mut state, name, data);
        }
    }

    /// Appends a last event and ends the live streams (once).
    pub fn last_event(&self, name: &str, data: &Value) {
        let mut state = self.lock();
        if !state.finished {
            publish(&mut state, name, data);
            close(&mut state);
        }
    }

    fn append_lossy(&self, pipe: Pipe, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes).into_owned();
        self.append(pipe, text.as_bytes());
    }

    /// A viewer that has seen everything up to `after` (0 for nothing).
    pub fn replay_after(&self, after: u64) -> Replay {
        let state = self.lock();
        let live = state.topic.as_ref().map(|topic| topic.subscribe(&Resume::Live));
        let start = state.log.partition_point(|(id, _)| *id <= after);
        Replay { frames: state.log[start..].iter().map(|(_, f)| f.clone()).collect(), live }
    }

    /// The id of the last event, and whether the log has ended.
    pub fn position(&self) -> (u64, bool) {
        let state = self.lock();
        (state.last_id, state.finished)
    }
}

fn close(state: &mut State) {
    state.finished = true;
    // Dropping the topic ends every live subscription once it has sent what it has.
    state.topic = None;
}

fn publish(state: &mut State, name: &str, data: &Value) {
    let id = state.last_id + 1;
    let frame = Event::new().event(name).id(id).data(data.to_string()).encode();
    state.last_id = id;
    state.stored += frame.len() as u64 + EVENT_OVERHEAD;
    state.log.push((id, frame.clone()));
    if let Some(topic) = &state.topic {
        // The topic keeps no ring (the log is the replay), so the id only labels the frame.
        let _ = topic.publish_with_id(id, Event::new().event(name).data(data.to_string()));
    }
}

/// How many leading bytes of `bytes` end on a character boundary: all of them, unless the end
/// is the start of a character that the next read completes (invalid bytes count as complete).
fn complete_utf8_prefix(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(error) if error.error_len().is_none() => error.valid_up_to(),
        Err(_) => {
            // Invalid somewhere: keep back only an incomplete character at the very end.
            let tail_start = bytes.len().saturating_sub(3);
            (tail_start..bytes.len())
                .find(|i| {
                    let tail = &bytes[*i..];
                    matches!(std::str::from_utf8(tail), Err(e) if e.error_len().is_none() && e.valid_up_to() == 0)
                })
                .unwrap_or(bytes.len())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn texts(output: &Output) -> Vec<String> {
        output
            .replay_after(0)
            .frames
            .iter()
            .map(|f| String::from_utf8(f.as_bytes().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn a_character_split_across_reads_arrives_whole() {
        let output = Output::new(1024, Metrics::new());
        let snowman = "☃".as_bytes();
        output.append(Pipe::Stdout, &snowman[..1]);
        output.append(Pipe::Stdout, &snowman[1..]);
        assert_eq!(texts(&output).len(), 1);
        assert!(texts(&output)[0].contains("\"text\":\"☃\""));
    }

    #[test]
    fn output_past_the_cap_is_counted_and_reported() {
        // Room for 10 bytes of text once the event's own cost is counted.
        let output = Output::new(10 + EVENT_OVERHEAD + 48, Metrics::new());
        output.append(Pipe::Stdout, b"0123456789abcdef");
        output.append(Pipe::Stderr, b"more");
        output.finish(&json!({ "reason": "exited" }));
        let frames = texts(&output);
        assert!(frames[0].contains("0123456789\""));
        assert!(frames[1].contains("event: dropped") && frames[1].contains("\"bytes\":10"));
        assert!(frames[2].contains("event: exit"));
        assert_eq!(output.position(), (3, true));
        assert_eq!(output.replay_after(2).frames.len(), 1, "replay from an id");
    }
}
