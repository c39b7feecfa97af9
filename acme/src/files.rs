//! The certificate's files: written atomically, read back for the renewal
//! clock.
//!
//! Every file is written to a temporary file in the same directory,
//! fsynced, renamed over the old one and the directory fsynced, so a
//! reader (nginx reloading) sees the old file or the new one, never half
//! of one, and a power cut leaves one of the two.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_cert::der::Decode as _;

/// Errors of the certificate files; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading, writing or renaming failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold what it should.
    #[error("{path}: {detail}")]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes `dir` (mode 0750: the group is the one nginx joins) if it is not
/// there.
pub fn ensure_dir(dir: &Path) -> Result<(), FileError> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o750)).map_err(io(dir))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically with `mode` (set on the temporary
/// file before any byte is written, so the secret is never readable by
/// others, not even for a moment).
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp))?;
        // The umask may have taken bits away; the mode is what we asked.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, path).map_err(io(path))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a file that may be missing (`Ok(None)`).
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// What the certificate on disk says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Its notAfter, Unix seconds.
    pub not_after: u64,
    /// Its DNS names (subjectAltName), as written.
    pub names: Vec<String>,
}

/// Reads the first certificate of a PEM chain: its notAfter and names.
pub fn cert_info(path: &Path, pem_text: &[u8]) -> Result<CertInfo, FileError> {
    let bad = |detail: String| FileError::Content {
        path: path.to_path_buf(),
        detail,
    };
    let blocks = pem::parse_many(pem_text).map_err(|e| bad(format!("not PEM: {e}")))?;
    let first = blocks
        .iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .ok_or_else(|| bad("holds no CERTIFICATE".into()))?;
    let cert = x509_cert::Certificate::from_der(first.contents())
        .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
    let not_after = cert
        .tbs_certificate
        .validity
        .not_after
        .to_unix_duration()
        .as_secs();
    let mut names = Vec::new();
    if let Some(exts) = &cert.tbs_certificate.extensions {
        for ext in exts {
            // 2.5.29.17: subjectAltName.
            if ext.extn_id.to_string() == "2.5.29.17" {
                if let Ok(san) =
                    x509_cert::ext::pkix::SubjectAltName::from_der(ext.extn_value.as_bytes())
                {
                    for name in san.0 {
                        if let x509_cert::ext::pkix::name::GeneralName::DnsName(dns) = name {
                            names.push(dns.to_string());
                        }
                    }
                }
            }
        }
    }
    Ok(CertInfo { not_after, names })
}

/// Now, Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_with_the_mode() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("privkey.pem");
        write_atomically(&path, b"one", 0o640).expect("write");
        write_atomically(&path, b"two", 0o640).expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
        assert_eq!(read_optional(&dir.path().join("none")).expect("read"), None);
    }

    #[test]
    fn reads_the_names_and_expiry_of_a_certificate() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["pi.example.org".into(), "*.pi.example.org".into()])
                .expect("params");
        params.not_after = rcgen::date_time_ymd(2031, 1, 2);
        let cert = params.self_signed(&key).expect("cert");
        let path = Path::new("fullchain.pem");
        let info = cert_info(path, cert.pem().as_bytes()).expect("info");
        assert_eq!(info.names, ["pi.example.org", "*.pi.example.org"]);
        assert_eq!(info.not_after, 1_925_078_400);
        assert!(cert_info(path, b"garbage").is_err());
    }
}
