//! The dashboard's test helper: a metric source whose values a test scripts, so alerts and the
//! board can be driven tick by tick without depending on what this machine is doing. Included by
//! the tests that use it (`#[path = "support/dashboard.rs"] mod dashboard_source;`).
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

/// A dashboard metric source whose CPU values a test scripts: each tick takes the next value
/// (repeating the last once the script runs out), and reports the processes the test lists.
#[derive(Clone, Debug, Default)]
pub struct ScriptedSource {
    pub script: std::sync::Arc<std::sync::Mutex<Script>>,
}

#[derive(Debug, Default)]
pub struct Script {
    pub cpu: std::collections::VecDeque<f64>,
    pub last: Option<f64>,
    pub processes: Vec<sse_apps::dashboard::sample::ProcessInfo>,
    /// Names the machine reports for its disks, mounts, interfaces and sensors, and the reason
    /// it gives for having no swap (what a hostile local user or device could choose).
    pub names: Vec<String>,
}

impl ScriptedSource {
    /// A source that will report these CPU values, one per tick.
    pub fn with_cpu(values: &[f64]) -> ScriptedSource {
        let source = ScriptedSource::default();
        source.script.lock().unwrap().cpu.extend(values);
        source
    }
}

impl sse_apps::dashboard::sample::MetricSource for ScriptedSource {
    fn sample(&mut self) -> sse_apps::dashboard::sample::Sample {
        use sse_apps::dashboard::sample::{
            Detail, DiskInfo, Limit, NetworkInfo, Point, Sample, Temperature, Usage,
        };
        let mut script = self.script.lock().unwrap();
        let cpu = script.cpu.pop_front().or(script.last);
        script.last = cpu;
        Sample {
            point: Point {
                t: sse_apps::shared::clock::unix_millis(),
                cpu,
                memory: Some(25.0),
                ..Point::default()
            },
            detail: Detail {
                cpu_limit: Limit { cores: 2.0, source: "host" },
                memory: Usage { used: 1 << 30, total: 4 << 30, source: "host" },
                processes: script.processes.clone(),
                disks: script
                    .names
                    .iter()
                    .map(|name| DiskInfo {
                        name: name.clone(),
                        mount: name.clone(),
                        total: 1 << 30,
                        available: 1 << 29,
                        ..DiskInfo::default()
                    })
                    .collect(),
                networks: script
                    .names
                    .iter()
                    .map(|name| NetworkInfo { name: name.clone(), rx_bps: None, tx_bps: None })
                    .collect(),
                temperatures: script
                    .names
                    .iter()
                    .map(|name| Temperature { label: name.clone(), celsius: 40.0 })
                    .collect(),
                unavailable: script
                    .names
                    .first()
                    .map(|name| [("swap".to_owned(), name.clone())].into())
                    .unwrap_or_default(),
                ..Detail::default()
            },
        }
    }
}

/// The process list shows the scripted processes too, every one with its actions.
impl sse_apps::dashboard::processes::ProcessSource for ScriptedSource {
    fn rows(&self) -> std::sync::Arc<Vec<sse_apps::dashboard::processes::ProcessRow>> {
        let script = self.script.lock().unwrap();
        let rows = script.processes.iter().map(|p| sse_apps::dashboard::processes::ProcessRow {
            pid: p.pid,
            name: p.name.clone(),
            user: p.user.clone(),
            cpu: p.cpu,
            memory: p.memory,
            actionable: true,
        });
        std::sync::Arc::new(rows.collect())
    }
}
