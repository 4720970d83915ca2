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
//!
//! The public modules are the facade the two binaries and the integration tests use
//! ([`cmd`], and the store, manifest, archive and catalog readers the tests check against);
//! the rest is `pub(crate)`. These docs are read with `cargo doc --document-private-items`.

// The docs link to the crate's own private modules on purpose (see above).
#![allow(rustdoc::private_intra_doc_links)]

pub mod alloc;
pub mod archive;
pub mod catalog;
pub mod check;
pub(crate) mod cli;
pub mod cmd;
pub(crate) mod complete;
pub mod config;
pub(crate) mod dirstack;
pub(crate) mod docs;
pub(crate) mod estimate;
pub(crate) mod fault;
pub(crate) mod hash;
pub(crate) mod home;
pub(crate) mod instant;
pub mod manifest;
pub mod output;
pub(crate) mod paths;
pub(crate) mod progress;
pub(crate) mod quote;
pub(crate) mod remove;
pub(crate) mod restat;
pub(crate) mod restore;
pub mod retention;
pub(crate) mod rules;
pub(crate) mod signal;
pub(crate) mod stats;
pub mod store;
pub(crate) mod sweep;
pub(crate) mod sys;
pub(crate) mod timing;
pub(crate) mod unlink;
pub(crate) mod unrm_cli;

pub use cmd::unrm;
pub mod users;
pub(crate) mod walk;

// Parts of restore, at the paths they had as modules of their own.
pub use restore::{obstacle, resume};
/// The deletion id lives with the store (`store::id`); `crate::id` stays its short path.
pub use store::id;

/// The unit tests' allocator records the largest block asked for ([`alloc::largest`]).
#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: alloc::largest::Recording = alloc::largest::Recording;
