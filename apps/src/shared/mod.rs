//! What the apps share, kept out of any one app so that no app imports another.
//!
//! Each of these began inside the first app that needed it and was then borrowed by the others
//! (exec writing its approvals through the dashboard's audit log, every app finding its data
//! directory through the chat). An app may use anything here; nothing here knows any app.
//!
//! | module | what |
//! |---|---|
//! | [`audit`] | an append-only JSON-lines record of who did what, synced before the answer |
//! | [`clock`] | the wall clock, in milliseconds since the Unix epoch |
//! | [`who`] | who made a request, as the audit records name them |
//! | [`data_dir`] | the default data directory, and its files: 0600, never opened through a symlink |
//!
//! Reaching the instance that owns something is shared too, but it is a layer of its own beside
//! [`crate::forward`]: [`crate::owner_routing`].

pub mod audit;
pub mod clock;
pub mod data_dir;
pub mod who;
