//! File handling: permission checks, the writer lock and atomic replacement.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::VaultError;

/// Permission bits a vault file must not have: any access by group or others.
const GROUP_OTHER_BITS: u32 = 0o077;

/// The variable that makes a save pause for a test to kill the process.
/// `before-rename` pauses after the new file is written and synced but
/// before it replaces the old one; `after-rename` pauses after the rename.
const PAUSE_VAR: &str = "TOKENFLEET_VAULT_TEST_PAUSE";

/// Reads a vault file after checking that it exists and is private.
pub(crate) fn read_private(path: &Path) -> Result<Vec<u8>, VaultError> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(VaultError::NotFound {
                path: path.to_owned(),
            })
        }
        Err(error) => return Err(VaultError::io("reading", path, error)),
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & GROUP_OTHER_BITS != 0 {
        return Err(VaultError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    fs::read(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => VaultError::NotFound {
            path: path.to_owned(),
        },
        _ => VaultError::io("reading", path, error),
    })
}

/// Returns the target of a symbolic link, so that saves replace the target
/// and lock beside it instead of replacing the link with a regular file.
/// Any other path, and a link that cannot be resolved, is returned as is.
pub(crate) fn follow_symlink(path: &Path) -> PathBuf {
    let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return path.to_owned();
    }
    fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// Reads the current bytes of a vault file, or `None` when it is missing.
pub(crate) fn read_current(path: &Path) -> Result<Option<Vec<u8>>, VaultError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(VaultError::io("reading", path, error)),
    }
}

/// An exclusive advisory lock (`flock`) on the vault's lock file, held
/// until dropped.
///
/// The lock is on a separate file, `.NAME.lock` beside the vault, because
/// every save replaces the vault file itself with a new inode.
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
}

impl WriterLock {
    /// Waits until no other writer holds the lock, then takes it.
    pub(crate) fn acquire(path: &Path) -> Result<Self, VaultError> {
        let lock_path = sibling(path, ".lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|error| VaultError::io("opening the lock file", &lock_path, error))?;
        fs4::FileExt::lock(&file).map_err(|error| VaultError::io("locking", &lock_path, error))?;
        Ok(Self { _file: file })
    }
}

/// Replaces `path` with `bytes` so that a crash at any point leaves either
/// the old file or the new one.
///
/// The new file is created with mode 0600 in the same directory, written,
/// synced, renamed over `path`, and then the directory is synced so the
/// rename itself survives a power loss. The caller holds the [`WriterLock`].
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    let directory = parent(path);
    remove_stale_temporaries(path);

    let prefix = sibling(path, ".").file_name().map(OsString::from);
    let mut temporary = tempfile::Builder::new()
        .prefix(prefix.as_deref().unwrap_or_default())
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(&directory)
        .map_err(|error| VaultError::io("creating a temporary file in", &directory, error))?;
    temporary
        .write_all(bytes)
        .and_then(|()| temporary.as_file().sync_all())
        .map_err(|error| VaultError::io("writing", temporary.path(), error))?;

    pause_for_test("before-rename");
    temporary
        .persist(path)
        .map_err(|error| VaultError::io("renaming into", path, error.error))?;
    pause_for_test("after-rename");

    File::open(&directory)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| VaultError::io("syncing the directory", &directory, error))
}

/// Creates the vault's directory, private to its owner, when it is missing.
pub(crate) fn create_parent(path: &Path) -> Result<(), VaultError> {
    let directory = parent(path);
    if directory.exists() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&directory)
        .map_err(|error| VaultError::io("creating the directory", &directory, error))
}

/// Removes temporary files left by a writer that was killed before its
/// rename. The caller holds the [`WriterLock`], so no other writer is
/// using them.
fn remove_stale_temporaries(path: &Path) {
    let Some(prefix) = sibling(path, ".").file_name().map(OsString::from) else {
        return;
    };
    let prefix = prefix.to_string_lossy().into_owned();
    let Ok(entries) = fs::read_dir(parent(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".tmp") {
            if let Err(error) = fs::remove_file(entry.path()) {
                tracing::debug!(file = %entry.path().display(), %error, "cannot remove a stale temporary file");
            }
        }
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Returns the path `.NAME` + `suffix` beside `path`, where NAME is its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(suffix);
    parent(path).join(name)
}

/// Sleeps for a minute when the test hook names this point.
fn pause_for_test(point: &str) {
    if std::env::var(PAUSE_VAR).is_ok_and(|value| value == point) {
        eprintln!("paused {point}");
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}
