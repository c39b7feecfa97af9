//! `GET /nic/update`'s front door: the `Authorization` header and the query
//! string, read the way the route reads them (warp's query filter is
//! serde_urlencoded into a map). Input: the header value, a newline, the
//! query string. Every label taken is one valid label directly under the
//! zone, and every address list gives at least one address.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use peach_dyndns_protocol::rules::check_label;
use peach_dyndns_server::dyndns2::{addresses, basic_auth, hostnames, label_of};

const DOMAIN: &str = "peach.dinosaur.is";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (authorization, query) = text.split_once('\n').unwrap_or((text, ""));
    let authorization = (!authorization.is_empty()).then_some(authorization);
    let Ok(query) = serde_urlencoded::from_str::<HashMap<String, String>>(query) else {
        return; // warp answers 400 before the handler runs.
    };
    let credentials = basic_auth(authorization);
    let user = credentials.as_ref().map_or("", |(user, _)| user.as_str());
    for host in hostnames(query.get("hostname").map(String::as_str), user) {
        if let Some(label) = label_of(&host, DOMAIN) {
            assert!(check_label(label).is_ok(), "{label:?}");
            assert_eq!(format!("{label}.{DOMAIN}"), host.trim_end_matches('.'));
        }
    }
    let peer = Some(IpAddr::V4(Ipv4Addr::new(24, 12, 12, 12)));
    if let Ok((ip, ip6)) = addresses(query.get("myip").map(String::as_str), peer) {
        assert!(ip.is_some() || ip6.is_some());
    }
});
