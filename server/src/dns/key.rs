//! TSIG keys and the files they live in.
//!
//! Two formats are read:
//! - a BIND `key` statement, as `tsig-keygen` writes it and as named writes
//!   its session key (`session.key`, key `local-ddns`):
//!   `key "name" { algorithm hmac-sha256; secret "<base64>"; };`
//!   (comments in `#`, `//` and `/* */` style and other statements around it
//!   are allowed, as in named.conf);
//! - a file holding only the base64 secret; the key's name and algorithm
//!   then come from the config.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, TSigner};

use super::DnsError;

/// How far apart (seconds) our clock and the server's may be; the value
/// `nsupdate` and BIND use (RFC 8945 §10 recommends 300).
const FUDGE: u16 = 300;

/// The algorithms hickory-proto can sign with, as BIND names them.
const ALGORITHMS: [&str; 3] = ["hmac-sha256", "hmac-sha384", "hmac-sha512"];

/// A TSIG key: its name, algorithm and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// The key's name as the server knows it, e.g. `local-ddns`.
    name: String,
    /// `hmac-sha256`, `hmac-sha384` or `hmac-sha512` (lower case).
    algorithm: &'static str,
    /// The shared secret (visible to the other backends' tests).
    pub(super) secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    // Never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"<hidden>")
            .finish()
    }
}

impl TsigKey {
    /// A key from its parts; `algorithm` as BIND spells it.
    pub fn new(name: &str, algorithm: &str, secret: Vec<u8>) -> Result<TsigKey, String> {
        let algorithm = parse_algorithm(algorithm)?;
        let name = name.trim_end_matches('.');
        if name.is_empty() {
            return Err("the key name is empty".into());
        }
        Name::from_ascii(name).map_err(|e| format!("key name {name:?}: {e}"))?;
        if secret.is_empty() {
            return Err("the secret is empty".into());
        }
        Ok(TsigKey {
            name: name.to_string(),
            algorithm,
            secret,
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The algorithm as BIND spells it.
    pub fn algorithm(&self) -> &'static str {
        self.algorithm
    }

    /// Reads a key file. `name` and `algorithm`, when given, are what the
    /// config says: a bare-secret file takes them, and a `key` statement
    /// must agree with them. When not given (BIND's session key), the file
    /// must be a `key` statement, or a bare secret that is then taken as
    /// `local-ddns` with `hmac-sha256`, the session key's name and algorithm.
    pub fn load(
        path: &Path,
        name: Option<&str>,
        algorithm: Option<&str>,
    ) -> Result<TsigKey, DnsError> {
        let text = std::fs::read_to_string(path).map_err(|source| DnsError::KeyFileRead {
            path: path.to_owned(),
            source,
        })?;
        TsigKey::parse(&text, name, algorithm).map_err(|detail| DnsError::KeyFile {
            path: path.to_owned(),
            detail,
        })
    }

    /// Parses the text of a key file; see [`load`](Self::load).
    pub fn parse(
        text: &str,
        want_name: Option<&str>,
        want_algorithm: Option<&str>,
    ) -> Result<TsigKey, String> {
        let tokens = tokenize(text)?;
        // Only bare words (and comments): a secret. Braces, quotes or `;`:
        // named.conf syntax.
        let words: Option<Vec<&str>> = tokens
            .iter()
            .map(|t| match t {
                Token::Word(w) => Some(w.as_str()),
                _ => None,
            })
            .collect();
        if let Some(words) = words {
            return parse_bare_secret(&words.concat(), want_name, want_algorithm);
        }
        let keys = parse_key_statements(&tokens)?;
        let key = match want_name {
            None => keys
                .into_iter()
                .next()
                .ok_or_else(|| String::from("no key statement"))?,
            Some(want) => {
                let found: Vec<String> = keys.iter().map(|k| k.name.clone()).collect();
                keys.into_iter()
                    .find(|k| same_name(&k.name, want))
                    .ok_or_else(|| {
                        format!(
                            "no key named {want:?} (the file has {}); \
                             set dns.key_name to the key's name",
                            found
                                .iter()
                                .map(|n| format!("{n:?}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?
            }
        };
        if let Some(want) = want_algorithm {
            let want = parse_algorithm(want)?;
            if want != key.algorithm {
                return Err(format!(
                    "key {:?} is {} but dns.key_algorithm says {want}; \
                     set key_algorithm = \"{}\"",
                    key.name, key.algorithm, key.algorithm
                ));
            }
        }
        Ok(key)
    }

    /// A hickory signer for this key.
    pub(crate) fn signer(&self) -> Result<TSigner, String> {
        let algorithm = match self.algorithm {
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            _ => TsigAlgorithm::HmacSha256,
        };
        let name = Name::from_ascii(&self.name).map_err(|e| e.to_string())?;
        TSigner::new(self.secret.clone(), algorithm, name, FUDGE).map_err(|e| e.to_string())
    }
}

/// Whether two key names are the same DNS name.
fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// BIND's spelling of an algorithm, checked against what we can sign with.
fn parse_algorithm(text: &str) -> Result<&'static str, String> {
    let lower = text.trim().trim_end_matches('.').to_ascii_lowercase();
    ALGORITHMS.into_iter().find(|a| *a == lower).ok_or_else(|| {
        format!(
            "algorithm {text:?} is not supported; use hmac-sha256, hmac-sha384 or \
                 hmac-sha512 (e.g. `tsig-keygen -a hmac-sha256 <name>`)"
        )
    })
}

/// A file holding only the base64 secret (`compact`: without whitespace
/// and comments).
fn parse_bare_secret(
    compact: &str,
    name: Option<&str>,
    algorithm: Option<&str>,
) -> Result<TsigKey, String> {
    if compact.is_empty() {
        return Err("the file is empty".into());
    }
    let secret = BASE64.decode(compact.as_bytes()).map_err(|e| {
        format!("neither a BIND `key \"name\" {{ … }};` statement nor a base64 secret ({e})")
    })?;
    // Without a config name this is BIND's session key, always local-ddns.
    TsigKey::new(
        name.unwrap_or("local-ddns"),
        algorithm.unwrap_or("hmac-sha256"),
        secret,
    )
}

/// A token of BIND's configuration syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word (`key`, `algorithm`, `hmac-sha256`, a base64 secret).
    Word(String),
    /// A quoted string, without the quotes.
    Quoted(String),
    /// `{`
    Open,
    /// `}`
    Close,
    /// `;`
    Semi,
}

/// Splits BIND configuration text into tokens, dropping comments.
fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                loop {
                    match chars.next() {
                        Some('/') if prev == '*' => break,
                        Some(c) => prev = c,
                        None => return Err("unterminated /* comment".into()),
                    }
                }
            }
            '{' => tokens.push(Token::Open),
            '}' => tokens.push(Token::Close),
            ';' => tokens.push(Token::Semi),
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => {
                            if let Some(c) = chars.next() {
                                s.push(c);
                            }
                        }
                        Some(c) => s.push(c),
                        None => return Err("unterminated quoted string".into()),
                    }
                }
                tokens.push(Token::Quoted(s));
            }
            c => {
                let mut s = String::from(c);
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '{' | '}' | ';' | '"') {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(s));
            }
        }
    }
    Ok(tokens)
}

/// Skips to the end of the line.
fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if c == '\n' {
            break;
        }
    }
}

/// Every `key` statement at the top level; other statements are skipped.
fn parse_key_statements(tokens: &[Token]) -> Result<Vec<TsigKey>, String> {
    let mut keys = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Word(w) if w.eq_ignore_ascii_case("key") => {
                let (key, next) = parse_key_statement(tokens, i + 1)?;
                keys.push(key);
                i = next;
            }
            _ => i = skip_statement(tokens, i),
        }
    }
    if keys.is_empty() {
        return Err("no key statement".into());
    }
    Ok(keys)
}

/// The index after the statement starting at `i` (its `;` at depth 0).
fn skip_statement(tokens: &[Token], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < tokens.len() {
        match tokens[i] {
            Token::Open => depth += 1,
            Token::Close => depth = depth.saturating_sub(1),
            Token::Semi if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Parses `<name> { algorithm …; secret "…"; };` from `i`; returns the key
/// and the index after the statement.
fn parse_key_statement(tokens: &[Token], mut i: usize) -> Result<(TsigKey, usize), String> {
    let name = match tokens.get(i) {
        Some(Token::Word(s) | Token::Quoted(s)) => s.clone(),
        _ => return Err("`key` is not followed by a name".into()),
    };
    i += 1;
    if tokens.get(i) != Some(&Token::Open) {
        return Err(format!("key {name:?}: expected `{{` after the name"));
    }
    i += 1;
    let (mut algorithm, mut secret) = (None, None);
    loop {
        match tokens.get(i) {
            Some(Token::Close) => {
                i += 1;
                break;
            }
            Some(Token::Word(clause)) => {
                let value = match tokens.get(i + 1) {
                    Some(Token::Word(v) | Token::Quoted(v)) => v.clone(),
                    _ => return Err(format!("key {name:?}: `{clause}` has no value")),
                };
                if tokens.get(i + 2) != Some(&Token::Semi) {
                    return Err(format!(
                        "key {name:?}: expected `;` after `{clause} {value}`"
                    ));
                }
                match clause.to_ascii_lowercase().as_str() {
                    "algorithm" => algorithm = Some(value),
                    "secret" => secret = Some(value),
                    // Unknown clauses are not ours to judge; named does that.
                    _ => {}
                }
                i += 3;
            }
            Some(other) => return Err(format!("key {name:?}: unexpected {other:?}")),
            None => return Err(format!("key {name:?}: missing `}};`")),
        }
    }
    if tokens.get(i) == Some(&Token::Semi) {
        i += 1;
    }
    let algorithm = algorithm.ok_or_else(|| format!("key {name:?} has no algorithm"))?;
    let secret = secret.ok_or_else(|| format!("key {name:?} has no secret"))?;
    let compact: String = secret.split_whitespace().collect();
    let secret = BASE64
        .decode(compact.as_bytes())
        .map_err(|e| format!("key {name:?}: the secret is not base64 ({e})"))?;
    let key = TsigKey::new(&name, &algorithm, secret).map_err(|e| format!("key {name:?}: {e}"))?;
    Ok((key, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What named 9.18 writes to `session-keyfile`.
    const SESSION_KEY: &str = "key \"local-ddns\" {\n\talgorithm hmac-sha256;\n\t\
                               secret \"kO8WzVzC0fxcnW5u1vHz5siP59D5OIIVIMrJ/EyjG8s=\";\n};\n";

    #[test]
    fn reads_named_session_key() {
        let key = TsigKey::parse(SESSION_KEY, None, None).expect("parse");
        assert_eq!(key.name(), "local-ddns");
        assert_eq!(key.algorithm(), "hmac-sha256");
        assert_eq!(key.secret.len(), 32);
        assert!(key.signer().is_ok());
        // The Debug form never shows the secret.
        assert!(!format!("{key:?}").contains("kO8W"));
    }

    #[test]
    fn reads_tsig_keygen_output_with_comments_and_other_statements() {
        let text = "# made by tsig-keygen\n// another comment\n/* and\n one more */\n\
                    options { directory \"/x\"; };\n\
                    key other { algorithm hmac-sha512; secret \"AAAA\"; };\n\
                    key \"pi-updater.\" {\n algorithm HMAC-SHA384;\n secret \"c2VjcmV0\";\n};";
        let key = TsigKey::parse(text, Some("pi-updater"), Some("hmac-sha384")).expect("parse");
        assert_eq!(key.name(), "pi-updater");
        assert_eq!(key.algorithm(), "hmac-sha384");
        assert_eq!(key.secret, b"secret");
        // Without a wanted name the first key is taken.
        let first = TsigKey::parse(text, None, None).expect("parse");
        assert_eq!(first.name(), "other");
    }

    #[test]
    fn reads_a_bare_secret() {
        let key = TsigKey::parse("  c2VjcmV0  \n", Some("k1"), Some("hmac-sha512")).expect("ok");
        assert_eq!((key.name(), key.algorithm()), ("k1", "hmac-sha512"));
        assert_eq!(key.secret, b"secret");
        let session = TsigKey::parse("# comment\nc2Vj\ncmV0\n", None, None).expect("ok");
        assert_eq!(session.name(), "local-ddns");
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let cases: &[(&str, Option<&str>, Option<&str>, &str)] = &[
            ("", None, None, "empty"),
            ("not base64 !!", Some("k"), None, "neither"),
            (SESSION_KEY, Some("other"), None, "no key named \"other\""),
            (
                SESSION_KEY,
                None,
                Some("hmac-sha512"),
                "set key_algorithm = \"hmac-sha256\"",
            ),
            (
                "key k { algorithm hmac-md5; secret \"AAAA\"; };",
                None,
                None,
                "not supported",
            ),
            ("key k { algorithm hmac-sha256; };", None, None, "no secret"),
            ("key k { secret \"AAAA\"; };", None, None, "no algorithm"),
            (
                "key k { algorithm hmac-sha256; secret \"@@@\"; };",
                None,
                None,
                "not base64",
            ),
            (
                "key k { algorithm hmac-sha256; secret \"AAAA\" };",
                None,
                None,
                "expected `;`",
            ),
            (
                "key k { algorithm hmac-sha256; secret \"AAAA",
                None,
                None,
                "unterminated",
            ),
            (
                "key k { algorithm hmac-sha256; secret \"AAAA\";",
                None,
                None,
                "missing",
            ),
            ("key { };", None, None, "not followed by a name"),
            ("c2VjcmV0", None, Some("hmac-md5"), "not supported"),
        ];
        for (text, name, alg, want) in cases {
            let err = TsigKey::parse(text, *name, *alg).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn load_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.key");
        let err = TsigKey::load(&missing, None, None).expect_err("missing");
        assert!(err.to_string().contains("missing.key"), "{err}");
        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "key k {").expect("write");
        let err = TsigKey::load(&bad, None, None).expect_err("bad");
        assert!(matches!(err, DnsError::KeyFile { .. }));
        assert!(err.to_string().contains("bad.key"), "{err}");
    }
}
