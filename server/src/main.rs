fn main() {
    println!("peach-dyndns-server {}", env!("CARGO_PKG_VERSION"));
}
