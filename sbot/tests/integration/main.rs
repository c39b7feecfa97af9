//! Integration tests of `peach-dyndns-sbot` against a real ssb-server 16.0.1
//! on 127.0.0.1, started by `testkit` in a temporary HOME.
//!
//! testkit's helpers are blocking (they run the ssb-server command line);
//! the tests call them directly from the test's single-threaded runtime,
//! which only delays the client's reader task while they run.

mod calls;
mod failures;
mod fake;
mod invite;

use std::time::Duration;

use ed25519_dalek::SigningKey;
use peach_dyndns_protocol::identity::{parse_secret_file, PublicKey};
use peach_dyndns_sbot::{Sbot, SbotConfig};

/// Generous for a loopback server on a busy 2-core CI machine; answers
/// normally take a few milliseconds.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The key testkit's sbot runs as, from its secret file.
fn server_key(sbot: &testkit::Sbot) -> SigningKey {
    let text = std::fs::read_to_string(sbot.secret_path()).expect("ssb-server's secret file");
    parse_secret_file(&text)
        .expect("ssb-server's own secret is valid")
        .signing_key()
        .clone()
}

/// Where testkit's sbot listens and who it is.
fn config(sbot: &testkit::Sbot) -> SbotConfig {
    let addr = ([127, 0, 0, 1], sbot.port()).into();
    SbotConfig::new(addr, sbot.id())
}

/// Connects to testkit's sbot as the sbot itself (its owner).
async fn connect_as_owner(sbot: &testkit::Sbot) -> Sbot {
    Sbot::connect(&config(sbot), &server_key(sbot), TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("connecting to ssb-server: {e}\n{}", sbot.log_tail()))
}

/// A new random ed25519 key, standing in for a Pi that has no sbot here.
fn random_key() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// The feed id of a key, `@<base64>.ed25519`.
fn feed_id(key: &SigningKey) -> String {
    PublicKey::from(key.verifying_key()).to_string()
}
