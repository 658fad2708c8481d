//! The subcommands of the `harness` binary that are more than a few lines.

pub mod fuzz;
pub mod load;
pub mod play;
pub mod run;
pub mod table;
