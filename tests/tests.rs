//! One integration-test binary, a module per area (ripgrep's layout).
mod answers;
mod common;
mod completion;
mod deep;
mod differential;
mod fuzz;
mod hostile_store;
mod isolation;
mod layers;
mod memory;
mod powercut;
mod readme;
mod saferm;
mod shell;
mod sparse;
mod store;
mod unrm;
