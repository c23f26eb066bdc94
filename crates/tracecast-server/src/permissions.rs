//! Owner-only permissions for the data directory and its database files.
//!
//! The embedded databases hold destination configs (sealed, but still) and the queue holds
//! every generation's prompts and responses. The data directory is created `0700` and each
//! SQLite database file `0600` before SQLite opens it: SQLite gives the `-wal` and `-shm` files
//! it creates next to a database the database file's own permissions, so they follow. Files
//! and a directory found looser at start are reported with a warning; the database files and
//! `encryption.key`, which tracecast owns, are also tightened to `0600`.

use std::io;
use std::path::Path;

/// The mode of the data directory.
pub const DIR_MODE: u32 = 0o700;
/// The mode of each database file (and its `-wal`/`-shm` files).
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and its parents) with mode `0700`; warns when an existing one lets its group
/// or others in.
pub fn prepare_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)?;
        }
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %dir.display(),
                mode = format_args!("{mode:o}"),
                "the data directory is readable by other users: it holds the databases (with prompts and responses); chmod 700 it"
            );
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Makes sure the SQLite database `path` is created `0600` (an empty file is a valid new
/// database), and tightens an existing one and its `-wal`/`-shm` files to `0600` with a
/// warning when they are looser.
pub fn prepare_db_file(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        if !path.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(FILE_MODE)
                .open(path)?;
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        for file in [
            path.to_path_buf(),
            path.with_file_name(format!("{name}-wal")),
            path.with_file_name(format!("{name}-shm")),
        ] {
            tighten(&file)?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Sets an existing file that its group or others can reach back to `0600`, with a warning.
/// A missing file is left alone.
pub fn tighten(file: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(file) else {
            return Ok(());
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %file.display(),
                mode = format_args!("{mode:o}"),
                "a data file was readable by other users; its mode is now 600"
            );
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(FILE_MODE))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(())
    }
}
