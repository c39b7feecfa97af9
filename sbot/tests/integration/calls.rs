//! The typed calls, as the pub's owner.

use serde_json::json;

use peach_dyndns_sbot::SbotError;

use super::{connect_as_owner, feed_id, random_key};

#[tokio::test]
async fn whoami_is_the_id_in_the_secret_file() {
    let sbot = testkit::Sbot::start();
    let client = connect_as_owner(&sbot).await;
    assert_eq!(client.whoami().await.expect("whoami"), sbot.id());
    assert_eq!(client.id(), sbot.id());
    client.close().await.expect("close");
}

#[tokio::test]
async fn published_announcement_is_read_back_by_type() {
    let sbot = testkit::Sbot::start();
    let client = connect_as_owner(&sbot).await;
    let announcement = json!({
        "type": "peach-dyndns",
        "domain": "peach.dinosaur.is",
        "url": "http://127.0.0.1:1/update",
        "ttl": 60
    });
    assert!(client
        .messages_by_type("peach-dyndns")
        .await
        .expect("messagesByType before publishing")
        .is_empty());

    let key = client.publish(&announcement).await.expect("publish");
    assert!(key.starts_with('%') && key.ends_with(".sha256"), "{key}");

    let found = client
        .messages_by_type("peach-dyndns")
        .await
        .expect("messagesByType");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["key"], json!(key));
    assert_eq!(found[0]["value"]["author"], json!(sbot.id()));
    assert_eq!(found[0]["value"]["content"], announcement);
    // Other types are not mixed in, and the server's CLI agrees.
    assert!(client
        .messages_by_type("no-such-type")
        .await
        .expect("messagesByType")
        .is_empty());
    assert_eq!(sbot.messages_by_type("peach-dyndns").len(), 1);
}

#[tokio::test]
async fn follow_then_block_changes_is_following_and_is_blocking() {
    let sbot = testkit::Sbot::start();
    let client = connect_as_owner(&sbot).await;
    let me = sbot.id();
    let pi = feed_id(&random_key());

    assert!(!client.is_following(me, &pi).await.expect("isFollowing"));
    assert!(!client.is_blocking(me, &pi).await.expect("isBlocking"));

    client
        .publish(&json!({"type": "contact", "contact": pi, "following": true}))
        .await
        .expect("publish follow");
    assert!(client.is_following(me, &pi).await.expect("isFollowing"));
    assert!(!client.is_blocking(me, &pi).await.expect("isBlocking"));
    let hops = client.hops(None, None).await.expect("hops");
    assert_eq!(hops.get(&pi), Some(&1.0), "{hops:?}");
    assert_eq!(hops.get(me), Some(&0.0), "{hops:?}");

    client
        .publish(&json!({"type": "contact", "contact": pi, "following": false, "blocking": true}))
        .await
        .expect("publish block");
    assert!(!client.is_following(me, &pi).await.expect("isFollowing"));
    assert!(client.is_blocking(me, &pi).await.expect("isBlocking"));
    let hops = client.hops(Some(me), Some(2)).await.expect("hops");
    assert_eq!(hops.get(&pi), Some(&-1.0), "{hops:?}");
    // The server's own CLI sees the same graph.
    assert!(sbot.is_blocking(me, &pi));
}

#[tokio::test]
async fn calls_run_concurrently_on_one_connection() {
    let sbot = testkit::Sbot::start();
    let client = connect_as_owner(&sbot).await;
    let me = sbot.id();
    let pi = feed_id(&random_key());
    let (who, following, blocking, listed) = tokio::join!(
        client.whoami(),
        client.is_following(me, &pi),
        client.is_blocking(me, &pi),
        client.messages_by_type("contact"),
    );
    assert_eq!(who.expect("whoami"), me);
    assert!(!following.expect("isFollowing"));
    assert!(!blocking.expect("isBlocking"));
    assert!(listed.expect("messagesByType").is_empty());
}

#[tokio::test]
async fn server_errors_carry_the_servers_message() {
    let sbot = testkit::Sbot::start();
    let client = connect_as_owner(&sbot).await;
    // Not a method of ssb-server: its error (with a multi-line stack) must
    // come back as words, not as a timeout.
    let err = client
        .call("peachDyndns.nope", json!([]))
        .await
        .expect_err("unknown method");
    match &err {
        SbotError::Rpc {
            method, message, ..
        } => {
            assert_eq!(method, "peachDyndns.nope");
            // ssb-server 16 says "no async:peachDyndns,nope".
            assert!(message.contains("peachDyndns"), "{message}");
        }
        other => panic!("expected Rpc, got {other:?}"),
    }
    // A publish without a type is refused by ssb-db with its reason.
    let err = client
        .publish(&json!({"domain": "peach.dinosaur.is"}))
        .await
        .expect_err("publish without type");
    assert!(matches!(err, SbotError::Rpc { .. }), "{err:?}");
    // The connection is still good afterwards.
    assert_eq!(client.whoami().await.expect("whoami"), sbot.id());
}

#[tokio::test]
async fn a_stranger_may_connect_but_not_publish() {
    let sbot = testkit::Sbot::start();
    let stranger = random_key();
    let client = peach_dyndns_sbot::Sbot::connect(&super::config(&sbot), &stranger, super::TIMEOUT)
        .await
        .expect("anonymous peers may connect");
    let err = client
        .publish(&json!({"type": "peach-dyndns", "domain": "evil.example"}))
        .await
        .expect_err("a stranger cannot publish as the pub");
    assert!(matches!(err, SbotError::Rpc { .. }), "{err:?}");
    assert!(sbot.messages_by_type("peach-dyndns").is_empty());
}
