//! The archive: one `.tar.zst` per saferm run, written ([`writer`]), read ahead of on cold
//! trees ([`prefetch`]), with files that have holes stored sparse ([`sparse`]), and read back
//! against what was read before anything is unlinked ([`verify`]).

pub mod prefetch;
pub mod sparse;
pub mod verify;
pub mod writer;

pub use writer::*;

mod entries;
mod faults;
mod fill;
mod pipeline;
mod space;

pub use entries::typed_operand;
pub use faults::simulate_concurrent_change;
pub use pipeline::{run, Archived, Archiving, Origin};
