//! The subcommands, one file each.

pub mod inspect;
pub mod perplexity;
pub mod run;
pub mod tokenize;
