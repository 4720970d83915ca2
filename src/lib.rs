//! saferm: rm that keeps what it removes.
//!
//! Every removal is written into a zstd-compressed tar archive in a persistent per-user
//! store, read back and verified, made durable, and only then unlinked. `unrm` restores.
//! See DESIGN.md in the team's shared folder for the invariants this crate keeps.

pub mod alloc;
pub mod archive;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod cmd;
pub mod complete;
pub mod config;
pub mod dirstack;
pub mod docs;
pub mod estimate;
pub mod fault;
pub mod hash;
pub mod home;
pub mod manifest;
pub mod output;
pub mod paths;
pub mod progress;
pub mod quote;
pub mod remove;
pub mod restat;
pub mod restore;
pub mod retention;
pub mod rules;
pub mod signal;
pub mod stats;
pub mod store;
pub mod sweep;
pub mod sys;
pub mod timing;
pub mod unlink;
pub mod unrm_cli;

pub use cmd::unrm;
pub mod users;
pub mod walk;

// Parts of restore, at the paths they had as modules of their own.
pub use restore::{obstacle, resume};
/// The deletion id lives with the store (`store::id`); `crate::id` stays its short path.
pub use store::id;

/// The unit tests' allocator records the largest block asked for ([`alloc::largest`]).
#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: alloc::largest::Recording = alloc::largest::Recording;
