//! The `tapeseal` binary.

fn main() -> std::process::ExitCode {
    tapeseal::main()
}
