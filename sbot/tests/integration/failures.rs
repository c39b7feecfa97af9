//! Connection failures: each is quick and says what happened.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use peach_dyndns_sbot::{Sbot, SbotConfig, SbotError};

use super::{config, feed_id, random_key, server_key, TIMEOUT};

#[tokio::test]
async fn closed_port_is_a_connect_error_at_once() {
    // Bind and drop to get a port nothing listens on.
    let addr: SocketAddr = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("local addr")
    };
    let cfg = SbotConfig::new(addr, feed_id(&random_key()));
    let started = Instant::now();
    let err = Sbot::connect(&cfg, &random_key(), TIMEOUT)
        .await
        .expect_err("nothing listens there");
    assert!(
        matches!(&err, SbotError::Connect { addr: a, .. } if *a == addr),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.to_string().contains(&addr.to_string()));
}

#[tokio::test]
async fn wrong_server_id_is_a_handshake_error_not_a_hang() {
    let sbot = testkit::Sbot::start();
    let mut cfg = config(&sbot);
    cfg.server_id = feed_id(&random_key());
    let started = Instant::now();
    let err = Sbot::connect(&cfg, &server_key(&sbot), TIMEOUT)
        .await
        .expect_err("the server is not who we expect");
    assert!(matches!(err, SbotError::Handshake { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains(&cfg.server_id), "{err}");
}

#[tokio::test]
async fn wrong_network_key_is_a_handshake_error() {
    let sbot = testkit::Sbot::start();
    let mut cfg = config(&sbot);
    cfg.network_key = Some([7; 32]);
    let err = Sbot::connect(&cfg, &server_key(&sbot), TIMEOUT)
        .await
        .expect_err("another network");
    assert!(matches!(err, SbotError::Handshake { .. }), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn silent_server_is_a_timeout() {
    // A listener that never accepts: the kernel completes the TCP
    // connection, but no handshake answer ever comes.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let cfg = SbotConfig::new(addr, feed_id(&random_key()));
    let err = Sbot::connect(&cfg, &random_key(), Duration::from_secs(30))
        .await
        .expect_err("no answer");
    match err {
        SbotError::Timeout { method, after, .. } => {
            assert_eq!(method, "handshake");
            assert_eq!(after, Duration::from_secs(30));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    drop(listener);
}

#[tokio::test]
async fn invalid_server_id_is_refused_before_dialling() {
    let cfg = SbotConfig::new(([127, 0, 0, 1], 9).into(), "not-an-id");
    let err = Sbot::connect(&cfg, &random_key(), TIMEOUT)
        .await
        .expect_err("bad id");
    assert!(matches!(err, SbotError::InvalidId { .. }), "{err:?}");
}

#[tokio::test]
async fn calls_after_the_server_stops_fail_with_disconnected() {
    let sbot = testkit::Sbot::start();
    let client = super::connect_as_owner(&sbot).await;
    assert_eq!(client.whoami().await.expect("whoami"), sbot.id());
    drop(sbot);
    let started = Instant::now();
    let err = client.whoami().await.expect_err("server is gone");
    assert!(matches!(err, SbotError::Disconnected { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
