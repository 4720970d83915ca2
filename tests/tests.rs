//! One integration-test binary, a module per area (ripgrep's layout).
mod common;
mod differential;
mod saferm;
mod shell;
mod store;
mod unrm;
