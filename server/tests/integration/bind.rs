//! The server against a real BIND `named`: updates through `bind-local`,
//! `nsupdate` and `rfc2136` reach the zone; a restart re-applies the
//! registry.

use std::net::Ipv4Addr;
use std::sync::Arc;

use peach_dyndns_protocol::identity::Keypair;
use peach_dyndns_protocol::message::Op;
use peach_dyndns_server::graph::Allowlist;
use testkit::Named;

use crate::common::*;

fn bind_pub(named: &Named, pi: &Keypair, tables: &str) -> Pub {
    let _ = named;
    pub_with(Arc::new(Allowlist::new([pi.public()])), "", tables)
}

fn bind_local(named: &Named) -> String {
    format!(
        "[dns]\nbackend = \"bind-local\"\nserver = \"{}\"\nsession_key = \"{}\"",
        named.addr(),
        named.session_key_path().display()
    )
}

async fn update_release_cycle(named: &Named, tables: &str, name: &str) {
    let pi = Keypair::generate();
    let p = bind_pub(named, &pi, tables);
    let mut msg = update(&pi, name, Ipv4Addr::new(24, 12, 12, 12), 1);
    msg.ip6 = Some("2a01:4f8::7".parse().expect("ip6"));
    let (status, json, _) = post(&p.state, &body(&msg, &pi, &p.keypair)).await;
    assert_eq!(status, 200, "{json}");
    let fqdn = format!("{name}.{DOMAIN}");
    assert_eq!(named.dig(&fqdn, "A"), ["24.12.12.12"]);
    assert_eq!(named.dig(&fqdn, "AAAA"), ["2a01:4f8::7"]);
    // Only an A now: the AAAA goes.
    let msg = update(&pi, name, Ipv4Addr::new(24, 12, 12, 13), 2);
    assert_eq!(post(&p.state, &body(&msg, &pi, &p.keypair)).await.0, 200);
    assert_eq!(named.dig(&fqdn, "A"), ["24.12.12.13"]);
    assert!(named.dig(&fqdn, "AAAA").is_empty());
    let mut release = update(&pi, name, Ipv4Addr::new(24, 12, 12, 13), 3);
    release.op = Op::Release;
    release.ip = None;
    assert_eq!(
        post(&p.state, &body(&release, &pi, &p.keypair)).await.0,
        200
    );
    assert!(named.dig(&fqdn, "A").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_local_sets_and_releases() {
    let named = Named::start();
    update_release_cycle(&named, &bind_local(&named), "viabindlocal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsupdate_sets_and_releases() {
    let named = Named::start();
    let tables = format!(
        "[dns]\nbackend = \"nsupdate\"\nport = {}\nsession_key = \"{}\"",
        named.port(),
        named.session_key_path().display()
    );
    update_release_cycle(&named, &tables, "viansupdate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc2136_sets_and_releases() {
    let named = Named::start();
    let tables = format!(
        "[dns]\nbackend = \"rfc2136\"\nserver = \"{}\"\nkey_name = \"{}\"\nkey_file = \"{}\"",
        named.addr(),
        named.tsig_key().name,
        named.tsig_key_path().display()
    );
    update_release_cycle(&named, &tables, "viarfc2136").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reapplies_the_registry_to_bind() {
    let named = Named::start();
    let pi = Keypair::generate();
    let p = bind_pub(&named, &pi, &bind_local(&named));
    let msg = update(&pi, "eb4890", Ipv4Addr::new(24, 5, 5, 5), 1);
    assert_eq!(post(&p.state, &body(&msg, &pi, &p.keypair)).await.0, 200);
    let fqdn = format!("eb4890.{DOMAIN}");
    // The record vanishes behind the server's back (a zone restored from
    // an old backup, say).
    named.nsupdate_local(&format!("update delete {fqdn} A\nsend\n"));
    assert!(named.dig(&fqdn, "A").is_empty());
    // The next start re-applies the registry.
    let (state, _) = peach_dyndns_server::build_state(p.state.config.clone()).expect("state");
    assert_eq!(state.reapply_registry().await.expect("reapply"), 1);
    assert_eq!(named.dig(&fqdn, "A"), ["24.5.5.5"]);
}
