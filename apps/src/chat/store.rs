//! Chat history in an embedded SQLite file.
//!
//! One connection behind a mutex (parking_lot's, for its fair hand-over, which the group commit's
//! writer uses between batches): SQLite writes one transaction at a time anyway, and holding the
//! same lock while new messages are published to the room's live stream keeps live ids in
//! commit order. The database runs in WAL mode with `synchronous=FULL`, so a message is on disk
//! before its POST is answered and survives `kill -9` and power loss alike; posts share commits
//! ([`super::group_commit`]) so that costs one fsync per batch, not one per message.
//!
//! Every call blocks; async callers go through [`Store::run`], which moves the work to tokio's
//! blocking pool so a slow disk never stalls the event loop.
//!
//! The database holds member token hashes, so it is the server's alone: the file is created 0600
//! (and a symlink in its place refused) by [`crate::shared::data_dir`] before SQLite opens it, and
//! SQLite gives its `-wal` and `-shm` files the database's mode. Not `SQLITE_OPEN_NOFOLLOW`:
//! that one refuses a link anywhere in the path, so a data directory kept on another disk
//! through a link would be refused too.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::shared::clock::unix_millis_i64;

/// Why the store failed. Internal details never reach a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory or the database file could not be created or opened. (Its cause is in
    /// the message, not a `source`: reported as a chain, it would be said twice.)
    #[error("cannot open the chat's database: {0}")]
    Io(std::io::Error),
    /// A blocking task was cancelled or panicked.
    #[error("storage task failed")]
    Task,
    /// The commit holding this message failed (every message in it gets this).
    #[error("commit failed: {0}")]
    Commit(String),
    /// The shared Redis said no, or could not be reached.
    #[error("Redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// A message the shared log says exists is not in it.
    #[error("message {0} is missing from the shared log")]
    Missing(u64),
}

impl From<std::io::Error> for StoreError {
    fn from(error: std::io::Error) -> StoreError {
        StoreError::Io(error)
    }
}

/// One stored message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Increasing across the whole database (so also within a room): the SSE event id.
    pub id: u64,
    /// The room it was posted in.
    pub room: String,
    /// Who posted it.
    pub nick: String,
    /// What they wrote.
    pub text: String,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// Milliseconds since 1970, server time.
    pub ts: i64,
}

/// A handle to the database. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Store {
    connection: Arc<Mutex<Connection>>,
}

/// The database's file name in the data directory.
pub const FILE_NAME: &str = "chat.sqlite3";

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = FULL;
    CREATE TABLE IF NOT EXISTS rooms (
        name TEXT PRIMARY KEY,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS members (
        room TEXT NOT NULL,
        nick_key TEXT NOT NULL,
        nick TEXT NOT NULL,
        token_sha256 TEXT NOT NULL,
        PRIMARY KEY (room, nick_key)
    );
    CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        room TEXT NOT NULL,
        nick TEXT NOT NULL,
        text TEXT NOT NULL,
        client_msg_id TEXT NOT NULL,
        ts INTEGER NOT NULL,
        UNIQUE (room, nick, client_msg_id)
    );
    CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room, id);
    CREATE INDEX IF NOT EXISTS members_by_token ON members (room, token_sha256);
";

/// What a post asks to store.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// The room it is posted in.
    pub room: String,
    /// Who posts it.
    pub nick: String,
    /// What they wrote.
    pub text: String,
    /// The sender's idempotency key.
    pub client_msg_id: String,
}

fn row_to_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: row.get::<_, i64>(0)?.try_into().unwrap_or(0),
        room: row.get(1)?,
        nick: row.get(2)?,
        text: row.get(3)?,
        client_msg_id: row.get(4)?,
        ts: row.get(5)?,
    })
}

const COLUMNS: &str = "id, room, nick, text, client_msg_id, ts";

impl Store {
    /// Opens (creating if needed) `dir/chat.sqlite3`, 0600 with its companion files.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        crate::shared::data_dir::create_dir(dir)?;
        let path = dir.join(FILE_NAME);
        // An empty file is an empty database to SQLite.
        crate::shared::data_dir::open_regular(
            &path,
            OpenOptions::new().read(true).write(true).create(true),
        )?;
        // Left by an older version (or a crash of one), readable by others: SQLite reuses them
        // as they are.
        for companion in ["-wal", "-shm", "-journal"] {
            crate::shared::data_dir::tighten_if_present(
                &dir.join(format!("{FILE_NAME}{companion}")),
            )?;
        }
        let connection = Connection::open(&path)?;
        connection.execute_batch(SCHEMA)?;
        Ok(Store { connection: Arc::new(Mutex::new(connection)) })
    }

    /// The connection, for a blocking thread.
    pub(super) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.connection.lock()
    }

    /// Runs blocking work with the connection on tokio's blocking pool.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&mut store.lock()))
            .await
            .map_err(|_| StoreError::Task)?
    }

    /// Room names, oldest first.
    pub fn rooms(connection: &Connection) -> Result<Vec<String>, StoreError> {
        let mut statement =
            connection.prepare_cached("SELECT name FROM rooms ORDER BY created_ms, name")?;
        let rows = statement.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether the room exists.
    pub fn room_exists(connection: &Connection, room: &str) -> Result<bool, StoreError> {
        let mut statement = connection.prepare_cached("SELECT 1 FROM rooms WHERE name = ?1")?;
        Ok(statement.exists([room])?)
    }

    /// Creates the room if it does not exist.
    pub fn ensure_room(connection: &Connection, room: &str) -> Result<(), StoreError> {
        connection
            .prepare_cached("INSERT OR IGNORE INTO rooms (name, created_ms) VALUES (?1, ?2)")?
            .execute(params![room, unix_millis_i64()])?;
        Ok(())
    }

    /// The SHA-256 (hex) of the token that holds `nick_key` in `room`, if anyone does.
    pub fn member_token(
        connection: &Connection,
        room: &str,
        nick_key: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut statement = connection
            .prepare_cached("SELECT token_sha256 FROM members WHERE room = ?1 AND nick_key = ?2")?;
        Ok(statement.query_row(params![room, nick_key], |row| row.get(0)).optional()?)
    }

    /// Gives `nick` in `room` to the holder of the token with this hash.
    pub fn set_member(
        connection: &Connection,
        room: &str,
        nick_key: &str,
        nick: &str,
        token_sha256: &str,
    ) -> Result<(), StoreError> {
        connection
            .prepare_cached(
                "INSERT INTO members (room, nick_key, nick, token_sha256) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (room, nick_key) DO UPDATE SET nick = excluded.nick, token_sha256 = excluded.token_sha256",
            )?
            .execute(params![room, nick_key, nick, token_sha256])?;
        Ok(())
    }

    /// The nick whose token has this hash in `room`.
    pub fn nick_for_token(
        connection: &Connection,
        room: &str,
        token_sha256: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut statement = connection
            .prepare_cached("SELECT nick FROM members WHERE room = ?1 AND token_sha256 = ?2")?;
        Ok(statement.query_row(params![room, token_sha256], |row| row.get(0)).optional()?)
    }

    /// Stores a message unless this sender already stored one with the same `client_msg_id`.
    /// Returns the message and whether it is new. Runs inside the caller's transaction
    /// ([`super::group_commit`] commits several at once).
    pub fn insert_message(
        connection: &Connection,
        new: &NewMessage,
    ) -> Result<(Message, bool), StoreError> {
        let existing = connection
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages WHERE room = ?1 AND nick = ?2 AND client_msg_id = ?3"
            ))?
            .query_row(params![new.room, new.nick, new.client_msg_id], row_to_message)
            .optional()?;
        if let Some(message) = existing {
            return Ok((message, false));
        }
        let ts = unix_millis_i64();
        connection
            .prepare_cached("INSERT INTO messages (room, nick, text, client_msg_id, ts) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![new.room, new.nick, new.text, new.client_msg_id, ts])?;
        let id = connection.last_insert_rowid().try_into().unwrap_or(0);
        let message = Message {
            id,
            room: new.room.clone(),
            nick: new.nick.clone(),
            text: new.text.clone(),
            client_msg_id: new.client_msg_id.clone(),
            ts,
        };
        Ok((message, true))
    }

    /// Up to `limit` messages of `room` with ids above `after`, oldest first.
    pub fn messages_after(
        connection: &Connection,
        room: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages WHERE room = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ))?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = statement.query_map(params![room, after, limit as i64], row_to_message)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` messages of `room` with ids below `before` (or the newest), newest last.
    pub fn messages_before(
        connection: &Connection,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages WHERE room = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
        ))?;
        let rows = statement.query_map(params![room, before, limit as i64], row_to_message)?;
        let mut messages: Vec<Message> = rows.collect::<Result<_, _>>()?;
        messages.reverse();
        Ok(messages)
    }

    /// The id of the newest message in `room` (0 when it has none).
    pub fn last_id(connection: &Connection, room: &str) -> Result<u64, StoreError> {
        let mut statement = connection
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM messages WHERE room = ?1")?;
        let id: i64 = statement.query_row([room], |row| row.get(0))?;
        Ok(id.try_into().unwrap_or(0))
    }
}
