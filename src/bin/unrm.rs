//! `unrm`: restore what saferm removed (being built; see the README).

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_default();
    match arg.as_str() {
        "--version" => println!("unrm {}", env!("CARGO_PKG_VERSION")),
        _ => {
            println!(
                "unrm {}: restore what saferm removed.",
                env!("CARGO_PKG_VERSION")
            );
            println!("Until unrm can restore, recover with GNU tar: tar --zstd -xpf ARCHIVE -C /");
        }
    }
}
