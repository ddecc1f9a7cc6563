//! idsync: keeps a Weights & Biases organization in step with a company directory.
//!
//! See ARCHITECTURE.md for the data flow. The core (`model`, `plan`, `report`) is pure;
//! `source`, `wandb`, `state`, `apply`, `daemon` and `sandbox` are the shell.

pub mod apply;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod duration;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod model;
pub mod notify;
pub mod plan;
pub mod report;
pub mod sandbox;
pub mod scim;
pub mod secret;
pub mod source;
pub mod state;
pub mod sync;
pub mod wandb;
