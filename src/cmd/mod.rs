//! The commands: each turns a command line into calls to the layers below and an exit
//! status. Nothing below `cmd` parses arguments or prints help.

pub mod rm;
pub mod unrm;
