//! The in-place edit behind the `configure` RPC: the `[registration]`
//! values it sets, written into the owner's config file with toml_edit so
//! every other key, comment and blank line stays as it was.

use std::path::Path;

use peach_dyndns_protocol::identity::PublicKey;

use crate::config::{check_http_url, Config, ConfigError, Registration};

/// The `[registration]` values the `configure` RPC sets. `None` removes the
/// key from the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrationEdit {
    /// The label.
    pub name: Option<String>,
    /// The pub's id.
    pub pub_id: Option<String>,
    /// The update URL (with `domain`), or `None` to use the announcement.
    pub url: Option<String>,
    /// The zone (with `url`).
    pub domain: Option<String>,
    /// Set `enabled` too, when given.
    pub enabled: Option<bool>,
}

impl RegistrationEdit {
    /// The `[registration]` table this edit sets, parsed into typed values;
    /// a bad value is [`ConfigError::Invalid`] naming its key (`path` is
    /// only used in messages).
    pub fn registration(&self, path: &Path) -> Result<Registration, ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        let pub_id = match &self.pub_id {
            Some(id) => Some(
                id.parse::<PublicKey>()
                    .map_err(|e| invalid("registration.pub_id", e.to_string()))?,
            ),
            None => None,
        };
        let url = match &self.url {
            Some(url) => {
                Some(check_http_url(url).map_err(|reason| invalid("registration.url", reason))?)
            }
            None => None,
        };
        Ok(Registration {
            name: self.name.clone(),
            pub_id,
            url,
            domain: self.domain.clone(),
        })
    }
}

/// Writes `edit` into the config file at `path`, keeping every other key,
/// comment and blank line as the owner left them, and returns the new,
/// checked config. The file is replaced atomically; if the result does not
/// validate, the file is left untouched.
pub fn edit_registration(path: &Path, edit: &RegistrationEdit) -> Result<Config, ConfigError> {
    // The typed check first, so a bad id or URL is refused with its key
    // (the RPC answers "invalid params") before the file is read.
    edit.registration(path)?;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| ConfigError::Parse {
                path: path.to_path_buf(),
                key: None,
                message: e.to_string().trim_end().to_string(),
            })?;
    if let Some(enabled) = edit.enabled {
        doc["enabled"] = toml_edit::value(enabled);
    }
    let reg = doc
        .entry("registration")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
    let Some(reg) = reg.as_table_like_mut() else {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            key: "registration".into(),
            reason: "is not a table".into(),
        });
    };
    for (key, value) in [
        ("name", &edit.name),
        ("pub_id", &edit.pub_id),
        ("url", &edit.url),
        ("domain", &edit.domain),
    ] {
        match value {
            Some(v) => {
                reg.insert(key, toml_edit::value(v.as_str()));
            }
            None => {
                reg.remove(key);
            }
        }
    }
    let new_text = doc.to_string();
    let config = Config::from_str(&new_text, path)?;
    crate::state::write_atomically(path, new_text.as_bytes()).map_err(|source| {
        ConfigError::Write {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load;

    #[test]
    fn edit_keeps_comments_and_other_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("daemon.toml");
        std::fs::write(
            &path,
            "# my settings\ncheck_interval_secs = 120 # two minutes\n\n[registration]\nname = \"old\"\n",
        )
        .expect("write");
        let id = peach_dyndns_protocol::identity::Keypair::generate().id();
        let edit = RegistrationEdit {
            name: Some("eb4890".into()),
            pub_id: Some(id.clone()),
            ..RegistrationEdit::default()
        };
        let c = edit_registration(&path, &edit).expect("edit");
        assert_eq!(c.registration.name.as_deref(), Some("eb4890"));
        assert_eq!(c.check_interval, std::time::Duration::from_secs(120));
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("# my settings"), "{text}");
        assert!(text.contains("# two minutes"), "{text}");
        assert_eq!(load(&path).expect("reload"), c);

        // A bad edit leaves the file as it was.
        let bad = RegistrationEdit {
            name: Some("NOT OK".into()),
            ..edit
        };
        assert!(edit_registration(&path, &bad).is_err());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    }
}
