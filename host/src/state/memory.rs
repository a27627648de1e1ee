//! The `memory` backend: proof ids in this process (shared by every instance, thread and
//! configuration generation), and the revocation list in the file named by `revocations = "…"`.
//! `agentgate revoke` edits that file atomically; the mirror notices the change by its stamp.

use super::{Backend, ListVersion, StoreError};
use agentgate_engine::revocation::{RevocationId, RevocationList};
use agentgate_engine::state::{ProofAnswer, ProofLimits, ProofMemory, ProofUse};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Proofs in memory; revocations in a file.
#[derive(Debug)]
pub struct MemoryBackend {
    proofs: ProofMemory,
    revocations: Option<PathBuf>,
    /// Serializes `revoke`/`unrevoke` within this process (read-modify-write of the file).
    writing: Mutex<()>,
}

impl MemoryBackend {
    /// A backend with `limits` on proofs and the revocation file `revocations`, if any.
    pub fn new(limits: ProofLimits, revocations: Option<PathBuf>) -> Self {
        MemoryBackend { proofs: ProofMemory::new(limits), revocations, writing: Mutex::new(()) }
    }

    fn file(&self) -> Result<&Path, StoreError> {
        self.revocations.as_deref().ok_or_else(|| StoreError::Content("no revocation file is configured (`revocations = \"…\"` in the config)".into()))
    }

    fn read(path: &Path) -> Result<RevocationList, StoreError> {
        let text = std::fs::read_to_string(path).map_err(|e| StoreError::Content(format!("{}: {e}", path.display())))?;
        // An empty file is what an editor leaves for a moment while it rewrites one in place: read
        // as "nothing is revoked", it would lift every revocation. The empty list is `{}`.
        if text.trim().is_empty() {
            return Err(StoreError::Content(format!(
                "{}: the file is empty (an empty revocation list is `{{}}`); the last good list stays in force",
                path.display()
            )));
        }
        RevocationList::parse(&text).map_err(|e| StoreError::Content(format!("{}: {e}", path.display())))
    }

    /// Read, change, write back atomically (a temporary file renamed over the old one).
    fn edit(&self, change: impl FnOnce(&mut RevocationList) -> bool) -> Result<bool, StoreError> {
        let path = self.file()?;
        let _guard = self.writing.lock().map_err(|_| StoreError::Other("the revocation file lock is poisoned".into()))?;
        let mut list = Self::read(path)?;
        if !change(&mut list) {
            return Ok(false);
        }
        let text = serde_json::to_string_pretty(&list.to_file_json()).map_err(|e| StoreError::Other(e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| StoreError::Other(format!("{}: {e}", dir.display())))?;
        std::io::Write::write_all(&mut tmp, format!("{text}\n").as_bytes()).map_err(|e| StoreError::Other(e.to_string()))?;
        tmp.persist(path).map_err(|e| StoreError::Other(format!("{}: {e}", path.display())))?;
        Ok(true)
    }
}

impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn remember_proof(&self, proof: &ProofUse<'_>) -> Result<ProofAnswer, StoreError> {
        Ok(self.proofs.remember(proof))
    }

    /// The file's stamp: modification time (ns), length and inode.
    fn revocations_version(&self) -> Result<ListVersion, StoreError> {
        let Some(path) = &self.revocations else { return Ok("none".into()) };
        let meta = std::fs::metadata(path).map_err(|e| StoreError::Content(format!("{}: {e}", path.display())))?;
        let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(format!("{modified}:{}:{inode}", meta.len()))
    }

    fn load_revocations(&self) -> Result<(ListVersion, RevocationList), StoreError> {
        let Some(path) = &self.revocations else { return Ok(("none".into(), RevocationList::default())) };
        // Stamp first: an edit landing while the file is read shows up as a new stamp next time.
        let version = self.revocations_version()?;
        Ok((version, Self::read(path)?))
    }

    fn revoke(&self, id: &RevocationId, expires: Option<u64>) -> Result<(), StoreError> {
        self.edit(|list| {
            list.remove(id);
            list.insert(id.clone(), expires);
            true
        })
        .map(drop)
    }

    fn unrevoke(&self, id: &RevocationId) -> Result<bool, StoreError> {
        self.edit(|list| list.remove(id))
    }

    fn check_health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn proofs_held(&self) -> Option<usize> {
        Some(self.proofs.len())
    }
}

#[cfg(test)]
mod tests {
    // PANIC SAFETY: test code.
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn revoke_and_unrevoke_edit_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("revoked.json");
        std::fs::write(&file, r#"{"agents":["a"],"keys":["bare-kid"]}"#).unwrap();
        let backend = MemoryBackend::new(ProofLimits::default(), Some(file.clone()));
        let v1 = backend.revocations_version().unwrap();
        backend.revoke(&RevocationId::User { issuer: Some("https://as".into()), sub: "bob".into() }, Some(99)).unwrap();
        assert!(backend.unrevoke(&RevocationId::Agent("a".into())).unwrap());
        assert!(!backend.unrevoke(&RevocationId::Agent("a".into())).unwrap(), "already gone");
        let (v2, list) = backend.load_revocations().unwrap();
        assert_ne!(v1, v2);
        let ids = |id: RevocationId| vec![id.canonical()];
        assert_eq!(list.lookup(&ids(RevocationId::User { issuer: Some("https://as".into()), sub: "bob".into() }), 98), Some(0));
        assert_eq!(list.lookup(&ids(RevocationId::Agent("a".into())), 0), None);
        assert_eq!(list.lookup(&ids(RevocationId::AnyKid("bare-kid".into())), 0), Some(0), "untouched entries survive the rewrite");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains(
                r#""keys": [
    "bare-kid""#
            ),
            "bare entries are written back as they were: {text}"
        );
    }

    #[test]
    fn a_malformed_file_is_content_not_an_outage() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("revoked.json");
        std::fs::write(&file, "{").unwrap();
        let backend = MemoryBackend::new(ProofLimits::default(), Some(file));
        let err = backend.load_revocations().unwrap_err();
        assert!(!err.is_outage(), "{err}");
        assert!(backend.revoke(&RevocationId::Agent("x".into()), None).is_err(), "never overwrite a file it cannot read");
    }
}
