//! Threshold alerts with hysteresis.
//!
//! Each watched metric has three thresholds (careful, warning, critical; 50/70/90% unless
//! configured). A value at or above a threshold raises the level at once; the level falls only
//! once the value is below the threshold by more than the hysteresis margin, so a value hovering
//! at a line does not flap. Going from `ok` to any level opens an alert with a fresh id; level
//! changes update that alert; falling back to `ok` clears it. An alert acknowledged at one level
//! that then escalates needs acknowledging again.

use std::collections::{HashMap, VecDeque};
use std::str::FromStr;

use serde::Serialize;

/// How many alerts (open or cleared) are kept for the page.
const KEPT: usize = 100;

/// A level, in increasing order of concern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Below every threshold.
    Ok,
    /// At or above the first threshold.
    Careful,
    /// At or above the second.
    Warning,
    /// At or above the third.
    Critical,
}

const RAISED: [Level; 3] = [Level::Careful, Level::Warning, Level::Critical];

/// Three ascending thresholds, in %.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds(pub [f64; 3]);

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds([50.0, 70.0, 90.0])
    }
}

impl FromStr for Thresholds {
    type Err = String;

    /// `"50,70,90"`: three ascending numbers.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let numbers: Vec<f64> = text
            .split(',')
            .map(|n| n.trim().parse::<f64>().map_err(|_| format!("{n:?} is not a number")))
            .collect::<Result<_, _>>()?;
        let [careful, warning, critical] = numbers[..] else {
            return Err("give three thresholds: careful,warning,critical".to_owned());
        };
        let ascending = careful < warning && warning < critical;
        if !(ascending && careful.is_finite() && critical.is_finite()) {
            return Err("thresholds must be finite and strictly ascending".to_owned());
        }
        Ok(Thresholds([careful, warning, critical]))
    }
}

impl Thresholds {
    fn of(&self, level: Level) -> f64 {
        match level {
            Level::Ok => f64::NEG_INFINITY,
            Level::Careful => self.0[0],
            Level::Warning => self.0[1],
            Level::Critical => self.0[2],
        }
    }
}

/// Thresholds for every metric, with overrides per metric name (`cpu`, `memory`, `swap`,
/// `disk:/`), and the hysteresis margin in percentage points.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertConfig {
    /// For metrics without an override.
    pub default: Thresholds,
    /// By metric name.
    pub per_metric: HashMap<String, Thresholds>,
    /// How far below a threshold a value must fall to leave its level.
    pub hysteresis: f64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig { default: Thresholds::default(), per_metric: HashMap::new(), hysteresis: 5.0 }
    }
}

impl AlertConfig {
    fn thresholds(&self, metric: &str) -> Thresholds {
        self.per_metric.get(metric).copied().unwrap_or(self.default)
    }
}

/// An acknowledgement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ack {
    /// Who acknowledged (client address).
    pub by: String,
    /// When, ms since the epoch.
    pub at: u64,
}

/// One alert: a metric's stay above its first threshold.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// Unique for this server's life.
    pub id: u64,
    /// `cpu`, `memory`, `swap` or `disk:<mount>`.
    pub metric: String,
    /// The current level (`ok` once cleared).
    pub level: Level,
    /// The highest level reached.
    pub peak: Level,
    /// The value that caused the latest change, in %.
    pub value: f64,
    /// The threshold of the current level (of the first level once cleared).
    pub threshold: f64,
    /// `"raised"` while open, `"cleared"` after.
    pub state: &'static str,
    /// When it opened, ms since the epoch.
    pub raised_at: u64,
    /// When it last changed.
    pub changed_at: u64,
    /// The acknowledgement of its current level, if any.
    pub ack: Option<Ack>,
}

/// Why an acknowledgement failed.
#[derive(Debug, PartialEq, Eq)]
pub enum AckError {
    /// No alert has this id (or it is too old to be kept).
    Unknown,
}

/// The alert state of every metric.
#[derive(Debug, Default)]
pub struct Alerts {
    config: AlertConfig,
    levels: HashMap<String, (Level, Option<u64>)>,
    kept: VecDeque<Alert>,
    next_id: u64,
}

impl Alerts {
    /// No alerts yet.
    pub fn new(config: AlertConfig) -> Alerts {
        Alerts { config, next_id: 1, ..Alerts::default() }
    }

    /// Feeds one value; returns the alert if it opened, changed level or cleared.
    pub fn observe(&mut self, metric: &str, value: f64, now: u64) -> Option<Alert> {
        let thresholds = self.config.thresholds(metric);
        let (current, open) = self.levels.get(metric).copied().unwrap_or((Level::Ok, None));
        let next = next_level(current, value, thresholds, self.config.hysteresis);
        if next == current {
            return None;
        }
        // An open alert that is no longer kept (all 100 were open) starts afresh.
        let open = open.filter(|id| self.kept.iter().any(|a| a.id == *id));
        let alert = match open {
            None => {
                let id = self.next_id;
                self.next_id += 1;
                if self.kept.len() == KEPT {
                    // The oldest cleared alert goes; an open one only when all are open.
                    let oldest_cleared = self.kept.iter().position(|a| a.level == Level::Ok);
                    self.kept.remove(oldest_cleared.unwrap_or(0));
                }
                self.kept.push_back(Alert {
                    id,
                    metric: metric.to_owned(),
                    level: next,
                    peak: next,
                    value,
                    threshold: thresholds.of(next),
                    state: "raised",
                    raised_at: now,
                    changed_at: now,
                    ack: None,
                });
                self.kept.back_mut()?
            }
            Some(id) => {
                let alert = self.kept.iter_mut().find(|a| a.id == id)?;
                if next > alert.level {
                    alert.ack = None;
                }
                alert.level = next;
                alert.peak = alert.peak.max(next);
                alert.value = value;
                alert.changed_at = now;
                if next == Level::Ok {
                    alert.state = "cleared";
                    alert.threshold = thresholds.of(Level::Careful);
                } else {
                    alert.threshold = thresholds.of(next);
                }
                alert
            }
        };
        let open = (next != Level::Ok).then_some(alert.id);
        let alert = alert.clone();
        self.levels.insert(metric.to_owned(), (next, open));
        Some(alert)
    }

    /// Marks an alert acknowledged (again, if it already was: the latest ack wins).
    pub fn acknowledge(&mut self, id: u64, ack: Ack) -> Result<Alert, AckError> {
        let alert = self.kept.iter_mut().find(|a| a.id == id).ok_or(AckError::Unknown)?;
        alert.ack = Some(ack);
        Ok(alert.clone())
    }

    /// Every kept alert, oldest first.
    pub fn kept(&self) -> impl Iterator<Item = &Alert> {
        self.kept.iter()
    }
}

/// The level `value` puts a metric at, given its `current` level.
fn next_level(current: Level, value: f64, thresholds: Thresholds, hysteresis: f64) -> Level {
    let reached =
        RAISED.into_iter().filter(|l| value >= thresholds.of(*l)).max().unwrap_or(Level::Ok);
    if reached >= current {
        return reached;
    }
    // Falling: stay at each level until the value is clearly below its threshold.
    RAISED
        .into_iter()
        .filter(|l| *l <= current && value >= thresholds.of(*l) - hysteresis)
        .max()
        .unwrap_or(Level::Ok)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn levels(values: &[f64]) -> Vec<Level> {
        let mut alerts = Alerts::new(AlertConfig::default());
        let mut level = Level::Ok;
        values
            .iter()
            .map(|v| {
                if let Some(alert) = alerts.observe("cpu", *v, 0) {
                    level = alert.level;
                }
                level
            })
            .collect()
    }

    #[test]
    fn hovering_at_a_line_does_not_flap() {
        use Level::*;
        assert_eq!(
            levels(&[49.0, 50.0, 49.0, 50.5, 46.0, 44.9]),
            [Ok, Careful, Careful, Careful, Careful, Ok]
        );
        assert_eq!(
            levels(&[95.0, 86.0, 84.0, 64.0, 10.0]),
            [Critical, Critical, Warning, Careful, Ok]
        );
    }

    #[test]
    fn an_episode_keeps_its_id_and_escalation_clears_the_ack() {
        let mut alerts = Alerts::new(AlertConfig::default());
        let opened = alerts.observe("memory", 55.0, 1).unwrap();
        alerts.acknowledge(opened.id, Ack { by: "me".into(), at: 2 }).unwrap();
        let escalated = alerts.observe("memory", 75.0, 3).unwrap();
        assert_eq!(
            (escalated.id, escalated.level, escalated.ack),
            (opened.id, Level::Warning, None)
        );
        let cleared = alerts.observe("memory", 10.0, 4).unwrap();
        assert_eq!(
            (cleared.id, cleared.state, cleared.peak),
            (opened.id, "cleared", Level::Warning)
        );
        let again = alerts.observe("memory", 60.0, 5).unwrap();
        assert_ne!(again.id, opened.id);
        assert_eq!(alerts.acknowledge(999, Ack { by: "me".into(), at: 6 }), Err(AckError::Unknown));
    }

    #[test]
    fn thresholds_parse_only_three_ascending_numbers() {
        assert_eq!("60,80,95".parse::<Thresholds>(), Ok(Thresholds([60.0, 80.0, 95.0])));
        assert!("80,60,95".parse::<Thresholds>().is_err());
        assert!("60,80".parse::<Thresholds>().is_err());
        assert!("a,b,c".parse::<Thresholds>().is_err());
        assert!("NaN,80,95".parse::<Thresholds>().is_err());
    }
}
