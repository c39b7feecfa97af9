//! peach-dyndns-daemon: the Pi's daemon (work in progress).
