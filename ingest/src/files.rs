//! Walking the files an input names: the files source of embedded mode and the history reader
//! list files the same way.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Lists the files under `path` (itself when a file), recursively, sorted, skipping hidden
/// names (`.` prefix).
pub fn list_files(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    // Directories already walked, by canonical path: a symlink loop is walked once.
    let mut visited: HashSet<PathBuf> = HashSet::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            let canonical = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
            if !visited.insert(canonical) {
                continue;
            }
            match std::fs::read_dir(&p) {
                Ok(rd) => {
                    for e in rd.flatten() {
                        let name = e.file_name();
                        if name.to_string_lossy().starts_with('.') {
                            continue;
                        }
                        stack.push(e.path());
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "cannot list directory");
                    // Reported to the reader as an unreadable entry (a dead letter).
                    out.push(p);
                }
            }
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Why an input named on the command line or in the configuration cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InputPathError {
    /// Nothing exists at the path.
    #[error("{} does not exist", .path.display())]
    Missing {
        /// The path as given.
        path: PathBuf,
    },
    /// The path exists but cannot be opened or listed (permissions, I/O error).
    #[error("{} cannot be read: {source}", .path.display())]
    Unreadable {
        /// The path as given.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A pipe, socket or device: never read (a pipe without a writer would block forever).
    #[error("{} is not a regular file or directory (pipe, socket or device)", .path.display())]
    NotAFile {
        /// The path as given.
        path: PathBuf,
    },
}

/// Checks that `path` names an input that can be read: an existing regular file that opens,
/// or a directory that lists (symbolic links followed). Files inside a directory are not
/// opened here: those that turn out unreadable become dead letters as the walk meets them.
///
/// # Errors
/// [`InputPathError`] saying what is wrong with `path`.
pub fn check_input(path: &Path) -> Result<(), InputPathError> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => InputPathError::Missing {
            path: path.to_path_buf(),
        },
        _ => InputPathError::Unreadable {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    let unreadable = |source| InputPathError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    if meta.is_dir() {
        std::fs::read_dir(path).map_err(unreadable)?;
    } else if meta.is_file() {
        std::fs::File::open(path).map_err(unreadable)?;
    } else {
        return Err(InputPathError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_special_inputs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        assert_eq!(
            check_input(&missing).unwrap_err().to_string(),
            format!("{} does not exist", missing.display())
        );
        std::fs::write(dir.path().join("a.json"), b"{}").unwrap();
        check_input(&dir.path().join("a.json")).unwrap();
        check_input(dir.path()).unwrap();
        assert_eq!(
            check_input(Path::new("/dev/null")).unwrap_err().to_string(),
            "/dev/null is not a regular file or directory (pipe, socket or device)"
        );
    }
}
