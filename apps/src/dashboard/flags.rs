//! The dashboard's flags (`sse-apps dashboard`, and every app on one port) and how they become a
//! [`DashboardConfig`]: the tick interval, the alert thresholds (one default set and one per
//! metric), the hysteresis, and who may be acted on.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::DashboardConfig;
use super::alerts::{AlertConfig, Thresholds};

/// The dashboard's own flags.
#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    /// Time between dashboard ticks at start (at least 200ms; viewers can change it)
    #[arg(help_heading = "Dashboard", long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Alert thresholds in %: careful,warning,critical
    #[arg(help_heading = "Dashboard", long, default_value = "50,70,90", value_name = "C,W,C")]
    pub alert_thresholds: Thresholds,
    /// Thresholds for one metric (cpu, memory, swap, disk:/mount), e.g. cpu=80,90,95 (repeatable)
    #[arg(help_heading = "Dashboard", long = "alert", value_name = "METRIC=C,W,C", value_parser = parse_metric_thresholds)]
    pub alerts: Vec<(String, Thresholds)>,
    /// How far (in percentage points) a value must fall below a threshold to leave its level
    #[arg(help_heading = "Dashboard", long, default_value_t = 5.0)]
    pub alert_hysteresis: f64,
    /// Allow control actions on other users' processes (never on pid 1 or the server itself)
    #[arg(help_heading = "Dashboard", long)]
    pub allow_control_all: bool,
}

impl DashboardArgs {
    /// The dashboard's settings, its audit log in `data_dir`.
    pub fn config(self, data_dir: PathBuf) -> DashboardConfig {
        DashboardConfig {
            data_dir,
            interval: self.interval,
            alerts: AlertConfig {
                default: self.alert_thresholds,
                per_metric: self.alerts.into_iter().collect(),
                hysteresis: self.alert_hysteresis,
            },
            allow_control_all: self.allow_control_all,
        }
    }
}

/// `--interval` (and the dashboard bench's): at least [`super::sampler::MIN_INTERVAL`].
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if interval < super::sampler::MIN_INTERVAL {
        return Err("at least 200ms: CPU usage cannot be measured over less".to_owned());
    }
    Ok(interval)
}

/// `--alert METRIC=careful,warning,critical`.
fn parse_metric_thresholds(text: &str) -> Result<(String, Thresholds), String> {
    let (metric, thresholds) =
        text.split_once('=').ok_or("write METRIC=careful,warning,critical")?;
    Ok((metric.trim().to_owned(), thresholds.parse()?))
}
