//! A file that rotates itself by size: `path` is written until the next write would take it past
//! `max_bytes`; then `path.1` becomes `path.2` and so on, `path` becomes `path.1`, and a new
//! `path` is started. Only `keep` rotated files are kept; older ones are removed.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// An append-only file rotated by size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens `path` for appending (creating it); the bytes already in it count toward the limit.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile { path: path.to_owned(), max_bytes: max_bytes.max(1), keep, file, size })
    }

    /// Appends `bytes` (whole lines), rotating first if they would take the file past the limit.
    /// A batch larger than the limit on its own goes into a fresh file whole: lines are never
    /// split across files.
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let len = bytes.len() as u64;
        if self.size > 0 && self.size.saturating_add(len) > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.size = self.size.saturating_add(len);
        Ok(())
    }

    /// `path.N` for N ≥ 1.
    pub fn rotated(path: &Path, n: u32) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            std::fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            std::fs::remove_file(Self::rotated(&self.path, self.keep)).or_else(ignore_missing)?;
            for n in (1..self.keep).rev() {
                std::fs::rename(Self::rotated(&self.path, n), Self::rotated(&self.path, n + 1)).or_else(ignore_missing)?;
            }
            std::fs::rename(&self.path, Self::rotated(&self.path, 1))?;
        }
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }
}

#[cfg(test)]
mod tests {
    // PANIC SAFETY: test code.
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn rotates_by_size_and_keeps_only_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let mut file = RotatingFile::open(&path, 10, 2).unwrap();
        for line in ["aaaa\n", "bbbb\n", "cccc\n", "dddd\n", "eeee\n", "ffff\n", "gggg\n"] {
            file.append(line.as_bytes()).unwrap();
        }
        assert_eq!(read(&path), "gggg\n");
        assert_eq!(read(&RotatingFile::rotated(&path, 1)), "eeee\nffff\n");
        assert_eq!(read(&RotatingFile::rotated(&path, 2)), "cccc\ndddd\n");
        assert!(!RotatingFile::rotated(&path, 3).exists(), "only `keep` rotated files stay");
    }

    #[test]
    fn a_batch_over_the_limit_is_not_split_and_an_existing_file_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        std::fs::write(&path, "old\n").unwrap();
        let mut file = RotatingFile::open(&path, 8, 0).unwrap();
        file.append(b"0123456789\n").unwrap();
        assert_eq!(read(&path), "0123456789\n", "with keep = 0 the full file is dropped");
        file.append(b"x\n").unwrap();
        assert_eq!(read(&path), "x\n");
    }
}
