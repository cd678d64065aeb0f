//! The `shopdiff` command.

fn main() {
    std::process::exit(shopdiff_server::cli::main());
}
