//! End-to-end tests: the real mock server on loopback, real agents, real files.

mod bad_input;
mod binary;
mod chaos;
mod delivery;
mod hostile_server;
mod interrupted_drop;
mod job_side;
mod latency;
mod local_attacks;
mod monitoring;
mod pickup;
mod reliability;
mod scripted;
mod support;
mod systemd;
