//! The dashboard's shared state and its one event stream.
//!
//! Everything viewers see goes through [`Board`]: ticks, alerts, acknowledgements and commands
//! change the state and publish their event under one lock, and a viewer that connects takes its
//! snapshot and its subscription under the same lock. So the snapshot plus the live events that
//! follow are exactly the state, with nothing missed and nothing twice.
//!
//! Every event is transient (no id, no replay ring): the dashboard is a view of now, and a
//! reconnecting page gets a fresh snapshot (ten minutes of history included) rather than a replay
//! of ticks it has no use for. Each event is encoded once, whatever the number of viewers.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use sse_core::hub::{Resume, Subscription, Topic};
use sse_core::wire::{Event, Frame};
use tokio::sync::{Notify, watch};

use super::alerts::{Ack, AckError, Alert, AlertConfig, Alerts};
use super::sample::{Point, Sample};
use crate::shared::clock::unix_millis;

/// How much history a snapshot carries.
pub const HISTORY: Duration = Duration::from_secs(600);
/// How many finished or running commands a snapshot carries.
const COMMANDS_KEPT: usize = 20;

/// A control action as viewers see it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CommandRecord {
    /// The id `POST /dashboard/commands` answered with.
    pub id: String,
    /// `terminate`, `renice` or `set_interval`.
    pub action: String,
    /// What was asked (pid, nice, interval_ms…).
    pub params: Value,
    /// `started`, `completed` or `failed`.
    pub state: &'static str,
    /// What happened (`completed`), or `{code, message}` (`failed`).
    pub outcome: Option<Value>,
    /// Ms since the epoch.
    pub started_at: u64,
    /// Ms since the epoch, once finished.
    pub finished_at: Option<u64>,
}

/// The dashboard's state and stream. Shared as `Arc<Board>`.
#[derive(Debug)]
pub struct Board {
    topic: Topic,
    state: Mutex<State>,
    /// Rung when a viewer connects, so an idle sampler starts.
    pub(super) wake: Notify,
    /// The sampling interval; the sampler watches it.
    pub(super) interval: watch::Sender<Duration>,
}

#[derive(Debug)]
struct State {
    history: VecDeque<Point>,
    latest: Option<Sample>,
    alerts: Alerts,
    commands: VecDeque<CommandRecord>,
}

impl Board {
    /// A board publishing on `topic`, sampling every `interval`.
    pub fn new(topic: Topic, interval: Duration, alerts: AlertConfig) -> Board {
        Board {
            topic,
            state: Mutex::new(State {
                history: VecDeque::new(),
                latest: None,
                alerts: Alerts::new(alerts),
                commands: VecDeque::new(),
            }),
            wake: Notify::new(),
            interval: watch::Sender::new(interval),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Viewers connected now.
    pub fn viewers(&self) -> usize {
        self.topic.subscriber_count()
    }

    /// The current sampling interval.
    pub fn interval(&self) -> Duration {
        *self.interval.borrow()
    }

    /// A new viewer: the `snapshot` frame and the subscription that continues exactly after it.
    /// Wakes the sampler if it was idle.
    pub fn connect(&self) -> (Frame, Subscription) {
        let state = self.lock();
        let subscription = self.topic.subscribe(&Resume::Live);
        let snapshot = json!({
            "interval_ms": self.interval().as_millis() as u64,
            "server_pid": std::process::id(),
            "history_s": HISTORY.as_secs(),
            "history": state.history,
            "latest": state.latest,
            "alerts": state.alerts.kept().collect::<Vec<_>>(),
            "commands": state.commands,
        });
        drop(state);
        self.wake.notify_one();
        (Event::new().event("snapshot").data(snapshot.to_string()).encode(), subscription)
    }

    /// Records one tick: history, `metrics`, and any `alert` it raises or clears.
    pub fn record(&self, sample: Sample) {
        let now = sample.point.t;
        let mut state = self.lock();
        let oldest = now.saturating_sub(HISTORY.as_millis() as u64);
        while state.history.front().is_some_and(|p| p.t < oldest) {
            state.history.pop_front();
        }
        state.history.push_back(sample.point.clone());
        self.publish("metrics", &sample);
        for (metric, value) in sample.watched() {
            if let Some(alert) = state.alerts.observe(&metric, value, now) {
                self.publish("alert", &alert);
            }
        }
        state.latest = Some(sample);
    }

    /// The kept alert with this id.
    pub fn alert(&self, id: u64) -> Option<Alert> {
        self.lock().alerts.kept().find(|a| a.id == id).cloned()
    }

    /// Acknowledges an alert and tells every viewer (`alert_ack`).
    pub fn acknowledge(&self, id: u64, by: String) -> Result<Alert, AckError> {
        let mut state = self.lock();
        let alert = state.alerts.acknowledge(id, Ack { by, at: unix_millis() })?;
        self.publish("alert_ack", &alert);
        Ok(alert)
    }

    /// Records a command's start, completion or failure and tells every viewer
    /// (`command_started`, `command_completed`, `command_failed`).
    pub fn command(&self, record: CommandRecord) {
        let mut state = self.lock();
        let name = match record.state {
            "started" => "command_started",
            "completed" => "command_completed",
            _ => "command_failed",
        };
        self.publish(name, &record);
        match state.commands.iter_mut().find(|c| c.id == record.id) {
            Some(kept) => *kept = record,
            None => {
                if state.commands.len() == COMMANDS_KEPT {
                    state.commands.pop_front();
                }
                state.commands.push_back(record);
            }
        }
    }

    /// Sends an event to the current viewers. Called with the state locked, so events go out in
    /// the order the state changed.
    fn publish(&self, name: &str, payload: &impl Serialize) {
        match serde_json::to_string(payload) {
            Ok(data) => self.topic.publish_transient(&Event::new().event(name).data(data)),
            Err(error) => tracing::error!(%error, event = name, "cannot encode a dashboard event"),
        }
    }
}
