//! tbot: the print-floor agent that takes approved jobs from the job side and drops
//! them, verified and whole, into the hotfolders of printers, CTPs and imposition
//! systems, plus a small mock of the job side to try and test it on one machine.

pub mod agent;
mod client_cert_probe;
pub mod config;
pub mod control;
pub mod demo;
pub mod health;
pub mod logging;
pub mod mock_command;
pub mod mock_server_command;
pub mod mockserver;
pub mod naming;
pub mod online_check;
pub mod operator_client;
pub mod operator_views;
mod pem;
pub mod protocol;
pub mod shutdown;
pub mod status;
pub mod ticket;
