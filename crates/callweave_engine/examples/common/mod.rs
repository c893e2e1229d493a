//! What the engine's examples share: the Python files they read.

use std::path::{Path, PathBuf};

/// Appends every `.py` file under `dir` to `out` (recursively, skipping `site-packages`).
pub fn python_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "site-packages") {
                continue;
            }
            python_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "py") {
            out.push(path);
        }
    }
}
