//! `trigger`: sends requests through a bidirectional server's `/trigger` and reports round trips.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

/// What to send.
#[derive(Clone, Debug)]
pub struct TriggerConfig {
    /// The server's base URL.
    pub server: String,
    /// The client to ask.
    pub client_id: String,
    /// The message to analyze.
    pub message: String,
    /// How many requests in all.
    pub count: usize,
    /// How many at once.
    pub concurrency: usize,
    /// Sent as `Authorization: Bearer` when the server wants a token.
    pub token: Option<String>,
}

/// The figures of a run.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Requests sent.
    pub count: usize,
    /// Requests that did not get a 200.
    pub errors: usize,
    /// Round-trip times of the successful ones, sorted.
    pub latencies: Vec<Duration>,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
}

impl Summary {
    /// The `q` quantile (0..=1) of successful round trips (nearest rank).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let rank = (q * self.latencies.len() as f64).ceil() as usize;
        self.latencies.get(rank.clamp(1, self.latencies.len()) - 1).copied()
    }
}

/// Sends the requests, printing each answer as it comes, and returns the summary.
pub async fn run(config: TriggerConfig) -> Summary {
    let http = reqwest::Client::new();
    let url = format!("{}/trigger", config.server.trim_end_matches('/'));
    let next = Arc::new(Mutex::new(0usize));
    let results = Arc::new(Mutex::new(Summary::default()));
    let started = Instant::now();
    let workers = (0..config.concurrency.max(1)).map(|_| {
        let (http, url, next, results, config) =
            (http.clone(), url.clone(), next.clone(), results.clone(), config.clone());
        tokio::spawn(async move {
            loop {
                let n = {
                    let mut next = next.lock().await;
                    if *next >= config.count {
                        return;
                    }
                    *next += 1;
                    *next
                };
                let query = [
                    ("client_id", config.client_id.as_str()),
                    ("message", config.message.as_str()),
                ];
                let sent = Instant::now();
                let mut request = http.get(&url).query(&query);
                if let Some(token) = &config.token {
                    request = request.bearer_auth(token);
                }
                let outcome = request.send().await;
                let took = sent.elapsed();
                let mut results = results.lock().await;
                results.count += 1;
                match outcome {
                    Ok(response) if response.status().is_success() => {
                        let body: Value = response.json().await.unwrap_or(Value::Null);
                        let result = body.get("result").map_or_else(String::new, |r| match r {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        });
                        println!("#{n} {:.1} ms: {result}", took.as_secs_f64() * 1000.0);
                        results.latencies.push(took);
                    }
                    Ok(response) => {
                        let status = response.status();
                        let body = response.text().await.unwrap_or_default();
                        println!(
                            "#{n} {status} after {:.1} ms: {body}",
                            took.as_secs_f64() * 1000.0
                        );
                        results.errors += 1;
                    }
                    Err(error) => {
                        println!(
                            "#{n} failed after {:.1} ms: {error}",
                            took.as_secs_f64() * 1000.0
                        );
                        results.errors += 1;
                    }
                }
            }
        })
    });
    for worker in workers.collect::<Vec<_>>() {
        let _ = worker.await;
    }
    let mut summary = std::mem::take(&mut *results.lock().await);
    summary.elapsed = started.elapsed();
    summary.latencies.sort();
    summary
}

/// Prints the summary lines.
pub fn print_summary(summary: &Summary) {
    let ms = |d: Option<Duration>| {
        d.map_or_else(|| "-".to_owned(), |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
    };
    let rate = summary.count as f64 / summary.elapsed.as_secs_f64().max(f64::EPSILON);
    println!(
        "{} requests, {} errors, p50 {}, p99 {}, {:.0} requests/s",
        summary.count,
        summary.errors,
        ms(summary.quantile(0.50)),
        ms(summary.quantile(0.99)),
        rate
    );
}
