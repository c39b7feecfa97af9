//! The server's TOML config (`Config::from_str`, what `Config::load` reads),
//! then everything the server derives from an accepted one without I/O:
//! its own labels, limits, the announcement, and the embedded DNS zone
//! (names from the config's `nameservers` and `hostmaster`).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use peach_dyndns_server::config::{Config, DnsConfig};
use peach_dyndns_server::dns;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_str(text, Path::new("fuzz.toml")) else {
        return;
    };
    let _ = config.own_labels();
    let _ = config.http.limits();
    let _ = config.graph_cache();
    let _ = config.announcement("@mqq13wXADKTTOx7a150RMiOmTud3Blxa2yOp4pdKJHc=.ed25519");
    // Only the embedded backend builds without touching files or programs.
    if matches!(config.dns, DnsConfig::Embedded { .. }) {
        let _ = dns::build(&config.dns, &config.domain);
    }
});
