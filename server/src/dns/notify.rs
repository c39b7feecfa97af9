//! NOTIFY (RFC 1996) from the embedded DNS to its secondaries: after every
//! change of the zone each secondary is told over UDP, so it asks for the
//! changes at once instead of at its next SOA refresh.
//!
//! One task per secondary follows the zone's serial. A NOTIFY is sent again
//! when no answer came within the timeout ([`TRIES`] times, the wait
//! doubling from [`FIRST_WAIT`]); a newer serial meanwhile starts over with
//! it. A secondary that answers with an error (REFUSED: it does not take
//! us for its primary) is logged and not asked again for that serial.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::transfer::Secondary;
use super::zone::Zone;

/// NOTIFYs sent for one serial before giving up (the secondary's SOA
/// refresh then catches up). RFC 1996 §3.6 leaves the number to us; BIND
/// sends five.
pub const TRIES: u32 = 5;
/// The wait for the first answer; it doubles with each try, up to
/// [`MAX_WAIT`].
pub const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait between tries.
const MAX_WAIT: Duration = Duration::from_secs(8);

/// Tells `secondary` of every new serial of `zone` until `serials` closes
/// (the zone is gone). Runs as a task beside the embedded server.
pub(crate) async fn follow(
    zone: Arc<Zone>,
    secondary: Secondary,
    mut serials: watch::Receiver<u32>,
) {
    loop {
        if serials.changed().await.is_err() {
            return;
        }
        // Start over whenever a newer serial arrives while we retry.
        loop {
            let serial = *serials.borrow_and_update();
            tokio::select! {
                () = notify(&zone, &secondary, serial) => break,
                changed = serials.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Sends the NOTIFY for `serial` until answered or out of tries.
async fn notify(zone: &Zone, secondary: &Secondary, serial: u32) {
    let to = secondary.address;
    let mut wait = FIRST_WAIT;
    for attempt in 1..=TRIES {
        match notify_once(zone, secondary).await {
            Ok(ResponseCode::NoError) => {
                tracing::debug!(%to, serial, attempt, "embedded DNS: NOTIFY answered");
                return;
            }
            Ok(rcode) => {
                tracing::warn!(
                    %to, serial, %rcode,
                    "embedded DNS: the secondary refused our NOTIFY; does it list this server \
                     (and key) as its primary?"
                );
                return;
            }
            Err(why) => {
                tracing::debug!(%to, serial, attempt, %why, "embedded DNS: NOTIFY not answered");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_WAIT);
            }
        }
    }
    tracing::warn!(
        %to, serial,
        "embedded DNS: no answer to {TRIES} NOTIFYs; the secondary will catch up at its SOA refresh"
    );
}

/// One NOTIFY and its answer's code; `Err` when none came within the
/// first wait or it did not verify.
async fn notify_once(zone: &Zone, secondary: &Secondary) -> Result<ResponseCode, String> {
    let to = secondary.address;
    let mut msg = Message::query();
    msg.metadata.op_code = OpCode::Notify;
    msg.metadata.authoritative = true;
    let mut query = Query::query(zone.name().clone(), RecordType::SOA);
    query.set_query_class(DNSClass::IN);
    msg.add_query(query);
    // The new SOA as a hint (RFC 1996 §3.7); the secondary asks anyway.
    msg.add_answer(zone.soa_now());
    let verifier = match &secondary.key {
        Some(key) => msg.finalize(key, unix_now()).map_err(|e| e.to_string())?,
        None => None,
    };
    let bytes = msg.to_vec().map_err(|e| e.to_string())?;
    let local: SocketAddr = match to {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket.connect(to).await.map_err(|e| e.to_string())?;
    socket.send(&bytes).await.map_err(|e| e.to_string())?;
    let mut verifier = verifier;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + FIRST_WAIT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| format!("no answer within {FIRST_WAIT:?}"))?
            .map_err(|e| e.to_string())?;
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if reply.metadata.id != msg.metadata.id
            || reply.metadata.message_type != MessageType::Response
            || reply.metadata.op_code != OpCode::Notify
        {
            continue;
        }
        if let Some(verifier) = verifier.as_mut() {
            // Only an answer signed with the key counts; a forged one
            // must not stop the retries.
            if reply.metadata.response_code == ResponseCode::NoError
                && verifier.verify(&buf[..n]).is_err()
            {
                continue;
            }
        }
        return Ok(reply.metadata.response_code);
    }
}

/// Seconds since the epoch, for TSIG.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
