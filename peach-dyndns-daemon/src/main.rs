fn main() {
    println!("peach-dyndns-daemon {}", env!("CARGO_PKG_VERSION"));
}
