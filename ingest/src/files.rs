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
