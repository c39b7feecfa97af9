//! Loading the SSB secret that signs updates, refusing one that other users
//! can read or write.

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

/// Reads an SSB secret file (ssb-server's `# …` form or go-sbot's plain
/// JSON) after checking that its mode gives group and others nothing.
pub fn load_secret(path: &Path) -> Result<Keypair, SecretError> {
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
}
