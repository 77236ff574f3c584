//! End-to-end tests: the real mock server on loopback, real agents, real files.

mod bad_input;
mod binary;
mod chaos;
mod delivery;
mod job_side;
mod latency;
mod pickup;
mod reliability;
mod support;
