//! Port and polling plumbing: free loopback ports, waiting for a probe.
//! The children the bench starts are `testkit::Process`es (their own
//! process group, stopped when dropped).

use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::bail;

pub(crate) fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn free_udp_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `probe` every 50 ms until it says yes or `limit` passes.
pub(crate) async fn wait_for<F, Fut>(
    limit: Duration,
    what: &str,
    mut probe: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if probe().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("timed out after {limit:?} waiting for {what}")
}
