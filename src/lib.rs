//! saferm: rm that keeps what it removes.
//!
//! Every removal is written into a zstd-compressed tar archive in a persistent per-user
//! store, read back and verified, made durable, and only then unlinked. `unrm` restores.
//! See DESIGN.md in the team's shared folder for the invariants this crate keeps.
//!
//! # The pipeline
//! ```text
//! argv ─cli::parse─▶ rules::Options ─walk─▶ walk::Plan (nothing removed yet)
//!   ─archive::run─▶ fill (archive::fill) ─seal─▶ verify (archive::verify) ‖ fsync
//!   ─publish the manifest─▶ sweep::unlink_plan (post-order, re-stat each) ─▶ retention
//! ```
//! A failure anywhere before the unlink phase keeps every original; a source that fails
//! keeps only its own object (DESIGN §1.3). `unrm` reads the store's catalog and restores
//! through `restore::Restorer`, which never writes outside its destination.
//!
//! # Modules, by layer
//! Layers point one way: a module imports only from its own layer or one below, and there
//! is no cycle (`tests/layers.rs` checks both).
//! - **Commands**: [`cmd`] (`cmd::rm`, `cmd::unrm`: one file per action), [`cli`] (rm's
//!   getopt_long grammar from one flag table, which also builds clap's help), [`unrm_cli`],
//!   [`docs`] (help, man pages, completions, shell snippets).
//! - **Domains**: [`rules`] (rm's pure decisions), [`walk`] (the plan), [`archive`] (writer,
//!   pipeline, verifier, sparse entries, read-ahead), [`remove`] (the library call for
//!   deleting, [`remove::delete`]), [`restat`] and [`sweep`] (the unlink phase),
//!   [`restore`], [`catalog`], [`check`] (verify and repair), [`retention`], [`stats`],
//!   [`complete`], [`estimate`].
//! - **Store**: [`store`] (the MUST rules in its doc comment; [`store::layout`] is the only
//!   code that names store objects), [`manifest`], [`hash`], [`config`], [`home`], [`users`].
//! - **System**: [`sys`] (the raw calls), [`unlink`] (the only module that deletes),
//!   [`dirstack`], [`signal`], [`alloc`], [`fault`] (failure injection for tests),
//!   [`timing`], [`output`], [`progress`], [`quote`], [`paths`].

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
