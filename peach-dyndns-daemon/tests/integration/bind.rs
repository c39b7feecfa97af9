//! The whole path through real BIND: the pub's server on `bind-local`
//! against `named` (started by the testkit harness), the daemon verifying
//! at `named`.

use std::time::Duration;

use peach_dyndns_daemon::daemon::{once, real_services};
use testkit::Named;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_through_bind_local_and_named_answers() {
    let named = Named::start();
    let pi = Pi::new();
    let table = format!(
        "backend = \"bind-local\"\nserver = \"{}\"\nsession_key = \"{}\"",
        named.addr(),
        named.session_key_path().display()
    );
    let pub_ = TestPub::start_with_dns(
        &[&pi.keypair],
        PubDns::Other {
            table,
            server: named.addr(),
        },
    )
    .await;
    let echo = Echo::start("127.0.0.5").await;
    let ip_table = format!("use_pub = false\necho_urls = [\"{}\"]", echo.url);
    let config = pi.write_config(&pi.config_text(&pub_, "", &ip_table));
    let outcome = once(&config, real_services(&config).expect("services")).await;
    assert_eq!(outcome.exit_code, 0, "{:#?}", outcome.status);
    assert_eq!(named.dig("eb4890.peach.dinosaur.is", "A"), ["127.0.0.5"]);

    // The address changes; the next run sends it and named follows.
    echo.set("127.0.0.6");
    let outcome = once(&config, real_services(&config).expect("services")).await;
    assert_eq!(outcome.exit_code, 0, "{:#?}", outcome.status);
    named.wait_for(
        "eb4890.peach.dinosaur.is",
        "A",
        &["127.0.0.6"],
        Duration::from_secs(5),
    );
}
