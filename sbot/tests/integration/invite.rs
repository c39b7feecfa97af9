//! Two sbots: a pub hands out an invite, the Pi accepts it over muxrpc.

use std::time::Duration;

use serde_json::json;

use super::connect_as_owner;

#[tokio::test]
async fn pi_accepts_pubs_invite_and_pub_follows_pi() {
    let pub_sbot = testkit::Sbot::builder().allow_private(true).start();
    let pi_sbot = testkit::Sbot::start();
    let pub_client = connect_as_owner(&pub_sbot).await;
    let pi_client = connect_as_owner(&pi_sbot).await;

    // invite.create over muxrpc too: one use, a loopback address.
    let code = pub_client
        .call("invite.create", json!([{"uses": 1}]))
        .await
        .expect("invite.create");
    let code = code.as_str().expect("an invite code is a string");
    assert!(code.contains(pub_sbot.id()), "{code}");

    assert!(!pub_client
        .is_following(pub_sbot.id(), pi_sbot.id())
        .await
        .expect("isFollowing"));

    // FIELD-NOTES Trap 1: tell the Pi's gossip about the pub first.
    pi_client
        .gossip_add("127.0.0.1", pub_sbot.port(), pub_sbot.id())
        .await
        .expect("gossip.add");
    pi_client.invite_accept(code).await.expect("invite.accept");

    assert!(pub_client
        .is_following(pub_sbot.id(), pi_sbot.id())
        .await
        .expect("isFollowing"));
    assert!(pi_client
        .is_following(pi_sbot.id(), pub_sbot.id())
        .await
        .expect("isFollowing"));

    // The pub's announcement reaches the Pi once it replicates the pub.
    let announcement = json!({
        "type": "peach-dyndns",
        "domain": "peach.dinosaur.is",
        "url": "http://127.0.0.1:1/update",
        "ttl": 60
    });
    pub_client.publish(&announcement).await.expect("publish");
    let mut live = pi_client
        .source(
            "messagesByType",
            json!([{"type": "peach-dyndns", "live": true, "old": true}]),
        )
        .expect("messagesByType live");
    // A live stream with old messages first says {"sync": true} where the
    // old ones end; skip that marker.
    let msg = {
        let next_message = async {
            loop {
                let item = live.next().await.expect("stream open").expect("an item");
                if item.get("sync").is_none() {
                    break item;
                }
            }
        };
        // The Pi connects to the pub by itself about 2 s after accepting
        // (FIELD-NOTES), and the message then arrives within 2.2 s. Once in
        // a CI run it had not after 30 s: ssb-server's gossip scheduler had
        // not reconnected. After 10 s the test asks the Pi to connect (safe
        // after accepting: FIELD-NOTES Trap 2 is about connecting before),
        // and says so; the announcement must still arrive within 30 s in all.
        tokio::pin!(next_message);
        match tokio::time::timeout(Duration::from_secs(10), &mut next_message).await {
            Ok(msg) => msg,
            Err(_) => {
                let nudged = pi_client
                    .call(
                        "gossip.connect",
                        json!([{ "host": "127.0.0.1", "port": pub_sbot.port(), "key": pub_sbot.id() }]),
                    )
                    .await;
                eprintln!("no announcement after 10 s; asked the Pi to connect: {nudged:?}");
                tokio::time::timeout(Duration::from_secs(20), &mut next_message)
                    .await
                    .expect("the announcement replicates within 30 s")
            }
        }
    };
    assert_eq!(msg["value"]["author"], json!(pub_sbot.id()));
    assert_eq!(msg["value"]["content"], announcement);
    drop(live);
    assert_eq!(
        pi_client
            .messages_by_type("peach-dyndns")
            .await
            .expect("messagesByType")
            .len(),
        1
    );

    // Regression check for FIELD-NOTES Trap 1: without the gossip.add above
    // the Pi's ssb-server crashes 2–3 s after invite.accept. That is the
    // real process's wall clock, so this one test waits in real time.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        pi_client.whoami().await.expect("Pi sbot alive"),
        pi_sbot.id()
    );
}
