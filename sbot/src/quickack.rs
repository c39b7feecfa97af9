//! A TCP read half that acknowledges what it reads at once.
//!
//! ssb-server writes each muxrpc packet as four small writes (box header,
//! packet header, box header, body) on a socket with Nagle's algorithm on,
//! so after the first write it waits for our ACK before sending the rest.
//! Linux delays that ACK by up to 40 ms on a connection that looks
//! interactive, which made every call take about 45 ms on loopback. Setting
//! `TCP_QUICKACK` after each read sends the pending ACK at once (the kernel
//! clears the flag by itself, hence after every read): calls then take well
//! under a millisecond of network time. Elsewhere than Linux this is a
//! plain read half.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;

/// tokio's read half of a TCP stream, re-arming `TCP_QUICKACK` after every
/// read that returned data.
pub(crate) struct QuickAckRead(pub(crate) OwnedReadHalf);

impl AsyncRead for QuickAckRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.0).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            rearm(&this.0);
        }
        polled
    }
}

#[cfg(target_os = "linux")]
fn rearm(read: &OwnedReadHalf) {
    // Only a latency hint: a failure changes nothing else, so it is ignored.
    let _ = socket2::SockRef::from(read.as_ref()).set_tcp_quickack(true);
}

#[cfg(not(target_os = "linux"))]
fn rearm(_read: &OwnedReadHalf) {}
