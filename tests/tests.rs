//! One integration-test binary, a module per area (ripgrep's layout).
//!
//! The tests make and move their own trees freely: the bans of clippy.toml are for `src/`.
#![allow(clippy::disallowed_methods)]
mod answers;
mod browse;
mod common;
mod completion;
mod deep;
mod differential;
mod fuzz;
mod hostile_store;
mod instant;
mod isolation;
mod json;
mod layers;
mod listing;
mod memory;
mod powercut;
mod progress;
mod readme;
mod saferm;
mod shell;
mod sparse;
mod store;
mod unrm;
