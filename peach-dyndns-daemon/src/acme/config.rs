//! `[acme]`: the certificate for the Pi's name.

use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::{Deserialize, Serialize};

/// Let's Encrypt's production directory: the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, high limits).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// `[acme]`: get and renew a certificate for the name (and `*.name`)
/// through the pub's `acme_set`/`acme_clear`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// Get and renew a certificate (off by default: the owner opts in).
    #[serde(default)]
    pub enabled: bool,
    /// The CA's RFC 8555 directory.
    #[serde(default = "default_directory", with = "url_text")]
    pub directory_url: Url,
    /// A contact address for the CA's expiry mails (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Ask for `*.name` too (one order, two TXT values).
    #[serde(default)]
    pub wildcard: bool,
    /// Where `fullchain.pem`, `privkey.pem` and the account live.
    #[serde(default = "default_cert_dir")]
    pub cert_dir: PathBuf,
    /// Renew this many days before the certificate's notAfter.
    #[serde(default = "default_renew_before_days")]
    pub renew_before_days: u32,
    /// Extra root certificates (PEM) trusted for the CA's directory and
    /// the pub, besides the webpki roots: a private CA, or Pebble in tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// A URL in TOML as its text, checked when read.
mod url_text {
    use reqwest::Url;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
        let text = String::deserialize(d)?;
        Url::parse(&text).map_err(|e| D::Error::custom(format!("{text:?} is not a URL: {e}")))
    }

    pub fn serialize<S: Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(url.as_str())
    }
}

fn default_directory() -> Url {
    Url::parse(LETS_ENCRYPT).expect("invariant: the Let's Encrypt URL parses")
}
fn default_cert_dir() -> PathBuf {
    PathBuf::from("/var/lib/peach-dyndns/tls")
}
fn default_renew_before_days() -> u32 {
    // Let's Encrypt's own advice for 90-day certificates.
    30
}

impl Default for AcmeConfig {
    fn default() -> AcmeConfig {
        toml::from_str("").expect("invariant: every [acme] field has a default")
    }
}

impl AcmeConfig {
    /// What is wrong with the values, as (key, reason), if anything.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.directory_url.scheme() != "https" {
            return Err((
                "acme.directory_url",
                format!("{} is not https:// (RFC 8555 §6.1)", self.directory_url),
            ));
        }
        if self.renew_before_days == 0 || self.renew_before_days > 3650 {
            return Err((
                "acme.renew_before_days",
                format!("{} is not between 1 and 3650", self.renew_before_days),
            ));
        }
        if let Some(email) = &self.email {
            if !peach_dyndns_acme::is_mail_address(email) {
                return Err(("acme.email", format!("{email:?} is not a mail address")));
            }
        }
        if self.cert_dir.as_os_str().is_empty() || !self.cert_dir.is_absolute() {
            return Err((
                "acme.cert_dir",
                format!("{} is not an absolute path", self.cert_dir.display()),
            ));
        }
        Ok(())
    }

    /// `fullchain.pem`: the certificate and its chain.
    pub fn fullchain_path(&self) -> PathBuf {
        peach_dyndns_acme::order::fullchain_path(&self.cert_dir)
    }

    /// `privkey.pem`: the certificate's key (kept across renewals).
    pub fn privkey_path(&self) -> PathBuf {
        peach_dyndns_acme::order::privkey_path(&self.cert_dir)
    }

    /// The extra roots file, if any.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let c = AcmeConfig::default();
        assert!(!c.enabled);
        assert_eq!(c.directory_url.as_str(), LETS_ENCRYPT);
        assert_eq!(c.cert_dir, Path::new("/var/lib/peach-dyndns/tls"));
        assert_eq!(c.renew_before_days, 30);
        assert!(c.check().is_ok());
        for (text, key) in [
            (
                "directory_url = \"http://ca.example/dir\"",
                "acme.directory_url",
            ),
            ("renew_before_days = 0", "acme.renew_before_days"),
            ("email = \"nobody\"", "acme.email"),
            ("cert_dir = \"tls\"", "acme.cert_dir"),
        ] {
            let c: AcmeConfig = toml::from_str(text).expect(text);
            assert_eq!(c.check().map_err(|e| e.0), Err(key), "{text}");
        }
        assert!(toml::from_str::<AcmeConfig>("bogus = 1").is_err());
    }
}
