//! The embedded zone's serial across restarts: a small file holding a
//! serial the zone has not reached yet (a high-water mark).
//!
//! Secondaries take a serial that goes back as "nothing new" and keep
//! serving the old zone, so the serial must never go back. The clock alone
//! is not enough: a burst of changes puts the serial ahead of the clock,
//! and a restart right after would start below it. Before the zone's
//! serial passes the mark, a new mark [`RESERVE`] ahead is written (and
//! synced); a restart starts at the mark. So the file is written once per
//! [`RESERVE`] changes in a burst, or once per change when changes are
//! rarer than one a second (the clock then leads).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::DnsError;

/// How far ahead of the serial the mark is set. Each restart skips at most
/// this many serials, far below the 2^31 that serial arithmetic allows.
pub(crate) const RESERVE: u32 = 1000;

/// The file holding the mark.
#[derive(Debug, Clone)]
pub(crate) struct SerialFile {
    /// Its path.
    path: PathBuf,
}

impl SerialFile {
    /// The file at `path` (it need not exist yet).
    pub(crate) fn new(path: &Path) -> SerialFile {
        SerialFile {
            path: path.to_owned(),
        }
    }

    /// The mark stored, or `None` when there is no file yet.
    pub(crate) fn load(&self) -> Result<Option<u32>, DnsError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(DnsError::SerialFile {
                    path: self.path.clone(),
                    detail: format!("cannot read it: {e}"),
                })
            }
        };
        text.trim()
            .parse::<u32>()
            .map(Some)
            .map_err(|e| DnsError::SerialFile {
                path: self.path.clone(),
                detail: format!(
                    "it holds {:?}, not a serial ({e}); \
                     write the zone's current serial (dig SOA) plus 1000 into it",
                    text.trim()
                ),
            })
    }

    /// Writes `mark` (to a temporary file, synced, then renamed over the
    /// old one, so a crash leaves the old mark or the new, never half).
    pub(crate) fn store(&self, mark: u32) -> Result<(), DnsError> {
        // Per process: `check` (often as root) starts a zone of its own on
        // the same file, and must not leave a temporary file the service's
        // user cannot replace.
        let tmp = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            writeln!(file, "{mark}")?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            // The rename itself survives a power cut once the folder is synced.
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| DnsError::SerialFile {
            path: self.path.clone(),
            detail: format!("cannot write it: {e}"),
        })
    }
}

/// Whether serial `a` is after `b` in serial arithmetic (RFC 1982).
pub(crate) fn is_after(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_round_trips_and_a_bad_file_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = SerialFile::new(&dir.path().join("serial"));
        assert_eq!(file.load().expect("load"), None);
        file.store(1_764_000_123).expect("store");
        assert_eq!(file.load().expect("load"), Some(1_764_000_123));
        std::fs::write(dir.path().join("serial"), "soon\n").expect("write");
        let err = file.load().expect_err("garbage").to_string();
        assert!(err.contains("serial"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn serial_arithmetic() {
        assert!(is_after(2, 1));
        assert!(!is_after(1, 2));
        assert!(!is_after(5, 5));
        assert!(is_after(3, u32::MAX), "wraps");
    }
}
