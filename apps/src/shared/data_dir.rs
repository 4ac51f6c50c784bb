//! The data directory: where it is by default ([`default_dir`]), and how its files are kept.
//!
//! Its files are the server's alone: every file the apps create there is 0600
//! and every directory 0700, and no file there is ever opened through a symbolic link.
//!
//! What the apps keep is not for other local users: the chat's database holds member token
//! hashes, the audit logs say who did what. Modes are set when a file is created (`open(2)`'s
//! mode argument), not changed afterwards, so there is no moment at which a file is readable by
//! others; a file an older version left readable is made 0600 when it is next opened.
//!
//! A symlink where a data file should be is refused (`O_NOFOLLOW`) with an error that says so:
//! followed, it would let whoever planted it have a server (often root) append audit lines to,
//! or rewrite, any file it points at. The data directory itself may be a link (a user keeping
//! their data on another disk); only what is inside it is held to this.
//!
//! A process-wide umask is no substitute: tests and embedders assemble servers without `main`,
//! and a umask cannot tell links apart.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rustix::fs::OFlags;
use rustix::io::Errno;

/// Where data goes when `--data-dir` is not given: `sse-apps` in the user's data directory
/// (`~/.local/share/sse-apps` on Linux), or in the temporary directory when there is none. Every
/// app keeps its files here, each under its own name.
pub fn default_dir() -> std::path::PathBuf {
    dirs::data_dir().unwrap_or_else(std::env::temp_dir).join("sse-apps")
}

/// A data file's mode.
pub const FILE_MODE: u32 = 0o600;

/// A data directory's mode.
pub const DIR_MODE: u32 = 0o700;

/// Creates the directory `dir` 0700 if it does not exist (one that does is left as it is: a
/// data directory given with `--data-dir` may be shared on purpose). Parents it lacks are made
/// as `mkdir -p` makes them: they are not the server's to keep private.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        made => made?,
    }
    ours_alone(dir)
}

/// Refuses a data directory that is another user's, or that others may write to: whoever could
/// would replace or plant the server's files (as sshd's StrictModes refuses such a home).
fn ours_alone(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let found = std::fs::metadata(dir)?;
    let us = rustix::process::geteuid().as_raw();
    if found.uid() != us {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to uid {}, not to this server's uid {us}: its files would not be the \
                 server's alone (give a --data-dir of its own)",
                dir.display(),
                found.uid()
            ),
        ));
    }
    if found.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} may be written by others (mode {:o}): they could replace the server's files \
                 (chmod go-w it, or give a --data-dir of its own)",
                dir.display(),
                found.mode() & 0o777
            ),
        ));
    }
    Ok(())
}

/// Opens the data file at `path` as `options` say: created 0600, never through a symlink (an
/// error naming the link), and made 0600 if it is a regular file others could read or write.
///
/// The open itself does not block: opened for writing, a FIFO with nothing reading it (a log
/// shipper not started, or a pipe someone planted) is an error at once, where a blocking open
/// would hold up the server's start until a reader came, deaf even to SIGTERM. Once open, the
/// file is made blocking again, so that writes to a pipe wait for its reader as a log's should.
pub fn open(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let flags = (OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32;
    let file = options
        .mode(FILE_MODE)
        .custom_flags(flags)
        .open(path)
        .map_err(|error| named(path, error))?;
    let status = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, status - OFlags::NONBLOCK)?;
    tighten(&file)?;
    Ok(file)
}

/// [`open`], for a file that must be a regular file (a journal, a database): anything else (a
/// pipe, a socket, a device) is an error naming it. A FIFO opened for reading would otherwise
/// hold up the start until someone wrote to it, or be replaced by a rename without a word.
pub fn open_regular(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let not_regular = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file (a pipe, a socket or a device); remove it, or give \
                 --data-dir a directory of the server's own",
                path.display()
            ),
        )
    };
    let file = match open(path, options) {
        Ok(file) => file,
        // A pipe nothing reads, opened for writing: no reader would make it a regular file.
        Err(_) if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo()) => {
            return Err(not_regular());
        }
        Err(error) => return Err(error),
    };
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

/// Makes the regular file at `path` 0600 if it exists (a file SQLite opens itself, left by an
/// older version). Not through a symlink; a missing file is no error.
pub fn tighten_if_present(path: &Path) -> io::Result<()> {
    // Non-blocking, so that a FIFO someone left there does not hold up the start.
    let flags = (OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32;
    match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(file) => tighten(&file),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(named(path, error)),
    }
}

/// Removes the group and other bits of a regular file. Devices and pipes are left alone: their
/// modes belong to the system, and nothing the server writes is kept in them.
fn tighten(file: &File) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let metadata = file.metadata()?;
    // A hard link planted by another user to one of its files would be opened as ours.
    if metadata.is_file()
        && (metadata.nlink() > 1 || metadata.uid() != rustix::process::geteuid().as_raw())
    {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a data file must be the server's own, with no other name (it has another owner or \
             a hard link)",
        ));
    }
    if metadata.is_file() && metadata.permissions().mode() & 0o077 != 0 {
        // fchmod: the file just opened, whatever the path names by now.
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

/// An error opening `path` as a data file, told in terms of what to do. `O_NOFOLLOW` refuses a
/// symlink with ELOOP ("too many levels of symbolic links") and a non-blocking open refuses a
/// FIFO nothing reads with ENXIO ("no such device or address"): neither names the file or the
/// reason, and this does both.
fn named(path: &Path, error: io::Error) -> io::Error {
    let kind = std::fs::symlink_metadata(path).ok().map(|m| m.file_type());
    if error.raw_os_error() == Some(Errno::NXIO.raw_os_error())
        && kind.is_some_and(|k| k.is_socket())
    {
        return io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is a socket, not a file; remove it", path.display()),
        );
    }
    if error.raw_os_error() == Some(Errno::NXIO.raw_os_error()) && kind.is_some_and(|k| k.is_fifo())
    {
        return io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a named pipe that nothing reads; start its reader first, or remove it",
                path.display()
            ),
        );
    }
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if error.raw_os_error() != Some(Errno::LOOP.raw_os_error()) || !is_link {
        return error;
    }
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is a symbolic link; data files are never opened through one (remove it, or give \
             --data-dir the directory where the data should live)",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_directories_are_created_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        create_dir(&dir).unwrap();
        let file = dir.join("f");
        open(&file, OpenOptions::new().append(true).create(true)).unwrap();
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn a_file_left_readable_to_others_is_made_private_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let (opened, present) = (dir.path().join("opened"), dir.path().join("present"));
        for path in [&opened, &present] {
            std::fs::write(path, "x").unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        open(&opened, OpenOptions::new().read(true)).unwrap();
        tighten_if_present(&present).unwrap();
        tighten_if_present(&dir.path().join("absent")).unwrap();
        assert_eq!((mode(&opened), mode(&present)), (0o600, 0o600));
    }

    #[test]
    fn a_symlink_is_refused_by_name_and_its_target_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "before").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("log.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();

        let error = open(&link, OpenOptions::new().append(true).create(true)).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("log.jsonl is a symbolic link"), "{message}");
        let error = tighten_if_present(&link).unwrap_err();
        assert!(error.to_string().contains("is a symbolic link"), "{error}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "before");
        assert_eq!(mode(&target), 0o644, "not made private through the link either");

        // A dangling link is no different: nothing is created where it points.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        let error = open(&dangling, OpenOptions::new().append(true).create(true)).unwrap_err();
        assert!(error.to_string().contains("is a symbolic link"), "{error}");
        assert!(!dir.path().join("nowhere").exists());
    }
}
