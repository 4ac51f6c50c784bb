//! Readiness: whether every dependency the running apps use works now, for `/readyz`.
//!
//! `/healthz` says the process accepts connections; a load balancer or systemd wants to know
//! more before sending traffic: that the database opens, Redis answers, the sandbox can start.
//! Each part registers a named check when it is set up (the cluster its Redis, an app its own);
//! `/readyz` runs them all at once, each under a deadline, and answers 200, or 503 with the list
//! of what failed and why. Checks run only when asked, so they cost nothing on the streams'
//! paths.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long one check may take before it counts as failed.
pub const CHECK_DEADLINE: Duration = Duration::from_secs(2);

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type Check = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// The named checks of one server. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<Vec<(String, Check)>>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.checks().into_iter().map(|(name, _)| name).collect();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

/// A check that failed: its name and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NotReady {
    /// The dependency, e.g. `redis`, `chat_database`.
    pub name: String,
    /// What went wrong.
    pub error: String,
}

impl Readiness {
    /// Adds the check `name`: `check` returns a future that is `Ok` when the dependency works.
    pub fn register<F, Fut>(&self, name: &str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: Check = Arc::new(move || Box::pin(check()));
        self.checks.lock().unwrap_or_else(PoisonError::into_inner).push((name.to_owned(), check));
    }

    fn checks(&self) -> Vec<(String, Check)> {
        self.checks.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Runs every check at once; what failed (empty: ready).
    pub async fn failing(&self) -> Vec<NotReady> {
        let runs = self.checks().into_iter().map(|(name, check)| async move {
            let outcome = match tokio::time::timeout(CHECK_DEADLINE, check()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {} s", CHECK_DEADLINE.as_secs())),
            };
            outcome.err().map(|error| NotReady { name, error })
        });
        futures_util::future::join_all(runs).await.into_iter().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn every_failing_check_is_named_and_a_hung_one_fails_at_its_deadline() {
        let ready = Readiness::default();
        assert!(ready.failing().await.is_empty(), "nothing registered: ready");
        ready.register("fine", || async { Ok(()) });
        ready.register("broken", || async { Err("refused".to_owned()) });
        ready.register("hung", std::future::pending);
        let failing = ready.failing().await;
        let names: Vec<&str> = failing.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["broken", "hung"]);
        assert_eq!(failing[0].error, "refused");
        assert!(failing[1].error.contains("no answer"), "{:?}", failing[1]);
    }
}
