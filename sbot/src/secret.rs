//! Loading an SSB secret file, the one way both binaries do it: systemd's
//! credential first, then the configured path; refusing a file that other
//! users can read or write.
//!
//! The file format and the mode rule are pure functions in
//! `peach_dyndns_protocol::identity`; this module does the I/O around them.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use peach_dyndns_protocol::identity::{
    check_secret_mode, parse_secret_file, IdentityError, Keypair,
};

/// What went wrong loading the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read SSB secret {path}: {source}")]
    Read {
        /// The secret file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Other users can read or write it, or it is not a valid secret.
    #[error("SSB secret {path}: {source}")]
    Invalid {
        /// The secret file.
        path: PathBuf,
        /// Why.
        source: IdentityError,
    },
}

/// The credential name under which systemd hands a service the SSB secret
/// (`LoadCredential=ssb-secret:…` in both packaged units): ssb-server's or
/// sbot's own user owns the secret, and our binaries run as another user.
pub const SECRET_CREDENTIAL: &str = "ssb-secret";

/// Reads the SSB secret: systemd's private copy
/// (`$CREDENTIALS_DIRECTORY/ssb-secret`) when the service was given one,
/// else the file at `path` (the config's).
pub fn load_secret(path: &Path) -> Result<Keypair, SecretError> {
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    load_secret_from(path, credentials.as_deref())
}

/// [`load_secret`] with the credentials directory given (testable without
/// touching the process environment).
pub fn load_secret_from(path: &Path, credentials: Option<&Path>) -> Result<Keypair, SecretError> {
    match credentials.map(|dir| dir.join(SECRET_CREDENTIAL)) {
        Some(credential) if credential.is_file() => read_secret(&credential),
        _ => read_secret(path),
    }
}

/// Reads an SSB secret file (ssb-server's `# …` form or go-sbot's plain
/// JSON) after checking that its mode gives group and others nothing.
fn read_secret(path: &Path) -> Result<Keypair, SecretError> {
    let read_err = |source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |source| SecretError::Invalid {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    check_secret_mode(meta.permissions().mode()).map_err(invalid)?;
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    parse_secret_file(&text).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_systemd_credential_wins_over_the_configured_path() {
        let dir = tempfile::tempdir().expect("tmp");
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).expect("mkdir");
        let (cred, cred_kp) = write_secret(&creds, 0o400);
        std::fs::rename(&cred, creds.join(SECRET_CREDENTIAL)).expect("rename");
        let missing = dir.path().join("nope");
        let got = load_secret_from(&missing, Some(&creds)).expect("credential");
        assert_eq!(got.id(), cred_kp.id());
        // Without a credential the configured path is used (and named).
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        let err = load_secret_from(&missing, Some(&empty))
            .expect_err("missing")
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    fn write_secret(dir: &Path, mode: u32) -> (PathBuf, Keypair) {
        let kp = Keypair::generate();
        let path = dir.join("secret");
        std::fs::write(&path, kp.to_secret_file()).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        (path, kp)
    }

    #[test]
    fn private_secret_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        for mode in [0o600, 0o400] {
            let (path, kp) = write_secret(dir.path(), mode);
            assert_eq!(load_secret(&path).expect("load").id(), kp.id());
            std::fs::remove_file(&path).expect("rm");
        }
    }

    #[test]
    fn readable_by_others_is_refused_with_path_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        for mode in [0o644, 0o640, 0o604, 0o620] {
            let (path, _) = write_secret(dir.path(), mode);
            let err = load_secret(&path).expect_err("insecure").to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(&format!("{mode:04o}")), "{err}");
            assert!(err.contains("chmod 600"), "{err}");
            std::fs::remove_file(&path).expect("rm");
        }
    }

    #[test]
    fn missing_and_garbage_secrets_name_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        assert!(load_secret(&missing)
            .expect_err("missing")
            .to_string()
            .contains("nope"));
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, "hello").expect("write");
        std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let err = load_secret(&garbage).expect_err("garbage").to_string();
        assert!(
            err.contains("garbage") && err.contains("not valid"),
            "{err}"
        );
    }

    /// The server's test, moved here with the code: a secret others can
    /// read is refused naming the path, the same file at 0600 loads, and a
    /// missing or comment-only file is refused naming what is wrong.
    #[test]
    fn secret_files_others_can_read_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("secret");
        std::fs::write(&path, Keypair::generate().to_secret_file()).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_secret_from(&path, None)
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(load_secret_from(&path, None).is_ok());
        let missing = load_secret_from(&dir.path().join("nope"), None)
            .expect_err("missing")
            .to_string();
        assert!(missing.contains("nope"), "{missing}");
        std::fs::write(&path, "# only comments\n").expect("write");
        let garbage = load_secret_from(&path, None)
            .expect_err("garbage")
            .to_string();
        assert!(garbage.contains("not valid"), "{garbage}");
    }
}
