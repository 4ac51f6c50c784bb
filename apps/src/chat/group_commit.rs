//! Group commit: posts that arrive while a commit is on its way to disk go to disk together in
//! the next one.
//!
//! Every message is committed with `synchronous=FULL` before its POST is answered, so each
//! commit waits for an fsync. Committed one by one, posts arriving faster than the disk syncs
//! queue behind each other, and one slow fsync delays every message behind it by one more fsync
//! each. Here the first post to find no commit running becomes the writer: on a blocking thread
//! it takes the database, stores everything queued by then in one transaction, commits (one
//! fsync), sends each new message live in id order, answers each post, and goes again while more
//! have queued. A post that arrives during a commit waits for at most that commit and its own.
//! Between batches the writer hands the database to whoever waits for it (a history page, a
//! join), so a steady stream of posts never shuts reads out.
//!
//! The promises stay those of one commit per message: a post is answered only after the
//! transaction holding it is committed; if the commit fails, every post in it gets the error and
//! none was sent live; a repeated `client_msg_id` within one batch finds the first (the
//! transaction sees its own inserts). The writer runs on a detached blocking task, so a caller
//! that goes away mid-commit does not stop the others' commit.

use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::store::{Message, NewMessage, Store, StoreError};

/// Called with a new message once it is committed, in id order, before its post is answered.
pub type OnCommit = Box<dyn FnOnce(&Message) + Send>;

/// Stores posts in as few commits as the disk allows. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct GroupCommit {
    store: Store,
    queue: Arc<Mutex<Queue>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// A writer is running and will take whatever is queued before it stops.
    writing: bool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("waiting", &self.waiting.len())
            .field("writing", &self.writing)
            .finish()
    }
}

struct Waiting {
    message: NewMessage,
    on_commit: OnCommit,
    answer: oneshot::Sender<Result<(Message, bool), StoreError>>,
}

impl GroupCommit {
    /// Group commits into this store.
    pub fn new(store: Store) -> GroupCommit {
        GroupCommit { store, queue: Arc::default() }
    }

    /// Stores `message` unless its sender already stored one with the same `client_msg_id`;
    /// returns the message and whether it is new, once it is committed. A new message is handed
    /// to `on_commit` first.
    pub async fn post(
        &self,
        message: NewMessage,
        on_commit: OnCommit,
    ) -> Result<(Message, bool), StoreError> {
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut queue = self.queue.lock();
            queue.waiting.push(Waiting { message, on_commit, answer });
            !std::mem::replace(&mut queue.writing, true)
        };
        if lead {
            let writer = self.clone();
            // Detached on purpose: the batch is everyone's, not only this caller's.
            drop(tokio::task::spawn_blocking(move || writer.write_until_empty()));
        }
        // A dropped sender means the writer panicked; nothing of that batch was answered.
        answered.await.map_err(|_| StoreError::Task)?
    }

    /// The writer: commits batches until the queue is empty, then steps down.
    fn write_until_empty(&self) {
        let _if_panicking = StepDownOnPanic(&self.queue);
        loop {
            // The database first, then the queue: everything that queued while the writer
            // waited for the database joins this batch.
            let mut connection = self.store.lock();
            let batch = {
                let mut queue = self.queue.lock();
                if queue.waiting.is_empty() {
                    // Under the queue's lock, so a post queued from now on sees no writer and
                    // leads.
                    queue.writing = false;
                    return;
                }
                std::mem::take(&mut queue.waiting)
            };
            commit(&mut connection, batch);
            // Straight to whoever waits for the database (a history page, a join): under a
            // steady stream of posts the writer would otherwise take it back at once, and they
            // would wait until the posts stopped.
            MutexGuard::unlock_fair(connection);
        }
    }
}

/// If the writer panics, lets the next post lead and fails the posts it will never reach
/// (their callers get [`StoreError::Task`]) instead of leaving them waiting.
struct StepDownOnPanic<'a>(&'a Mutex<Queue>);

impl Drop for StepDownOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.0.lock();
            queue.waiting.clear();
            queue.writing = false;
        }
    }
}

/// One transaction for the whole batch; then, in id order, each new message goes live and each
/// post gets its answer.
fn commit(connection: &mut Connection, batch: Vec<Waiting>) {
    let stored = (|| {
        let transaction = connection.transaction()?;
        let outcomes: Vec<_> = batch
            .iter()
            .map(|waiting| Store::insert_message(&transaction, &waiting.message))
            .collect();
        transaction.commit()?;
        Ok::<_, StoreError>(outcomes)
    })();
    match stored {
        Ok(outcomes) => {
            for (waiting, outcome) in batch.into_iter().zip(outcomes) {
                if let Ok((message, true)) = &outcome {
                    (waiting.on_commit)(message);
                }
                let _ = waiting.answer.send(outcome);
            }
        }
        Err(error) => {
            let error = error.to_string();
            for waiting in batch {
                let _ = waiting.answer.send(Err(StoreError::Commit(error.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::FutureExt;
    use futures_util::future::join_all;

    use super::*;

    fn new_message(client_msg_id: &str) -> NewMessage {
        NewMessage {
            room: "general".into(),
            nick: "ada".into(),
            text: format!("text of {client_msg_id}"),
            client_msg_id: client_msg_id.into(),
        }
    }

    /// Counts SQLite's commits on the store's connection.
    async fn count_commits(store: &Store) -> Arc<AtomicUsize> {
        let commits = Arc::new(AtomicUsize::new(0));
        let counter = commits.clone();
        store
            .run(move |db| {
                db.commit_hook(Some(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    false
                }))?;
                Ok(())
            })
            .await
            .unwrap();
        commits
    }

    #[tokio::test]
    async fn posts_queued_during_a_commit_share_the_next_one_and_go_live_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let commits = count_commits(&store).await;
        let group = GroupCommit::new(store.clone());

        // Hold the database as a commit on disk would, while ten posts arrive.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (holding, held) = oneshot::channel();
        let holding_store = store.clone();
        let holder = tokio::spawn(async move {
            holding_store
                .run(move |_| {
                    let _ = holding.send(());
                    let _ = released.recv();
                    Ok(())
                })
                .await
        });
        held.await.unwrap();

        let live = Arc::new(Mutex::new(Vec::new()));
        let mut posts = Box::pin(join_all((0..10).map(|n| {
            let live = live.clone();
            // Two posts repeat a key: the second finds the first in the same transaction.
            let key = if n == 9 { "m0".to_owned() } else { format!("m{n}") };
            group.post(new_message(&key), Box::new(move |message| live.lock().push(message.id)))
        })));
        // One poll queues all ten (the first becomes the writer and waits for the database).
        assert!((&mut posts).now_or_never().is_none());
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let outcomes: Vec<_> = posts.await.into_iter().map(Result::unwrap).collect();

        assert_eq!(commits.load(Ordering::SeqCst), 1, "ten posts, one commit");
        let ids: Vec<u64> = outcomes[..9].iter().map(|(message, _)| message.id).collect();
        assert!(ids.windows(2).all(|pair| pair[1] == pair[0] + 1), "ids in post order: {ids:?}");
        assert!(outcomes[..9].iter().all(|(_, created)| *created));
        assert_eq!(outcomes[9], (outcomes[0].0.clone(), false), "the repeat gets the original");
        assert_eq!(*live.lock(), ids, "live once each, in id order");
        let stored = store
            .run(|db| Store::messages_after(db, "general", 0, 100))
            .await
            .unwrap()
            .into_iter()
            .map(|message| message.id)
            .collect::<Vec<_>>();
        assert_eq!(stored, ids);
    }

    #[tokio::test]
    async fn a_post_after_the_writer_stepped_down_leads_a_commit_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let commits = count_commits(&store).await;
        let group = GroupCommit::new(store);
        for n in 0..3 {
            let (message, created) =
                group.post(new_message(&format!("m{n}")), Box::new(|_| {})).await.unwrap();
            assert!(created);
            assert_eq!(message.text, format!("text of m{n}"));
        }
        assert_eq!(commits.load(Ordering::SeqCst), 3, "one at a time, one commit each");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_waits_for_the_batch_being_written_not_for_a_stream_of_posts_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let group = GroupCommit::new(store.clone());
        let (posters, per_poster) = (16, 100);
        let committed = Arc::new(AtomicUsize::new(0));
        let flowing = Arc::new(tokio::sync::Notify::new());
        let posting: Vec<_> = (0..posters)
            .map(|poster| {
                let (group, committed, flowing) =
                    (group.clone(), committed.clone(), flowing.clone());
                tokio::spawn(async move {
                    for n in 0..per_poster {
                        let (committed, flowing) = (committed.clone(), flowing.clone());
                        let on_commit = Box::new(move |_: &Message| {
                            if committed.fetch_add(1, Ordering::SeqCst) + 1 == 2 * posters {
                                flowing.notify_one();
                            }
                        });
                        group
                            .post(new_message(&format!("p{poster}-{n}")), on_commit)
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();

        flowing.notified().await;
        let page = store.run(|db| Store::messages_after(db, "general", 0, 10)).await.unwrap();
        let committed_by_then = committed.load(Ordering::SeqCst);
        for poster in posting {
            poster.await.unwrap();
        }
        assert_eq!(page.len(), 10);
        assert!(
            committed_by_then < posters * per_poster,
            "the read got the database while posts kept coming ({committed_by_then} committed)"
        );
        let all = store.run(|db| Store::messages_after(db, "general", 0, 10_000)).await.unwrap();
        assert_eq!(all.len(), posters * per_poster, "every post stored once");
    }

    #[tokio::test]
    async fn a_failed_commit_answers_every_post_in_it_with_the_error_and_sends_none_live() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Make every commit fail: a commit hook returning true turns the commit into a rollback.
        store
            .run(|db| {
                db.commit_hook(Some(|| true))?;
                Ok(())
            })
            .await
            .unwrap();
        let group = GroupCommit::new(store.clone());
        let live = Arc::new(AtomicUsize::new(0));
        let outcomes = join_all((0..3).map(|n| {
            let live = live.clone();
            group.post(
                new_message(&format!("m{n}")),
                Box::new(move |_| {
                    live.fetch_add(1, Ordering::SeqCst);
                }),
            )
        }))
        .await;
        for outcome in outcomes {
            assert!(matches!(outcome, Err(StoreError::Commit(_))), "{outcome:?}");
        }
        assert_eq!(live.load(Ordering::SeqCst), 0);
        store
            .run(|db| {
                db.commit_hook(None::<fn() -> bool>)?;
                Ok(())
            })
            .await
            .unwrap();
        let stored = store.run(|db| Store::messages_after(db, "general", 0, 100)).await.unwrap();
        assert!(stored.is_empty(), "nothing of a failed commit is stored: {stored:?}");
    }
}
