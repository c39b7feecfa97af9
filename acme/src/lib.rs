//! The ACME (RFC 8555) DNS-01 client parts that the daemon and the server
//! share: one order from account to certificate files ([`order::obtain`]),
//! with the challenge values set by whoever can set them (a
//! [`order::Challenger`]: the daemon signs `acme_set` to its pub; the
//! server writes its own zone for `[tls] acme = true`); instant-acme's
//! HTTP over reqwest with extra roots ([`http`]); and the certificate files,
//! written atomically and read back for the renewal clock ([`files`]).
//!
//! Renewal schedules stay with each binary: the daemon's follows its
//! update loop's status, the server's its own certificate.

pub mod files;
pub mod http;
pub mod order;

pub use order::{Challenger, OrderError, Plan};

/// Whether `text` looks like a mail address a CA takes as a `mailto:`
/// contact: one `@` with something on both sides, no spaces, commas or
/// colons (which would make it another URL or a list).
pub fn is_mail_address(text: &str) -> bool {
    text.split_once('@').is_some_and(|(user, host)| {
        !user.is_empty()
            && !host.is_empty()
            && !host.contains('@')
            && !text.contains([' ', ',', ':'])
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn mail_addresses() {
        for good in ["ops@dinosaur.is", "a.b+c@x.y"] {
            assert!(super::is_mail_address(good), "{good}");
        }
        for bad in [
            "nobody",
            "@x",
            "a@",
            "a b@x",
            "a@x,b@y",
            "mailto:a@x",
            "a@b@c",
        ] {
            assert!(!super::is_mail_address(bad), "{bad}");
        }
    }
}
