//! End-to-end tests: the real mock server on loopback, real agents, real files.

mod bad_input;
mod binary;
mod browser;
mod chaos;
mod delivery;
mod delivery_profiles;
mod hostile_server;
mod interrupted_drop;
mod interrupted_profile_drop;
mod job_side;
mod latency;
mod local_attacks;
mod metrics;
mod monitoring;
mod notify_socket;
mod operators;
mod pickup;
mod reliability;
mod reload;
mod scripted;
mod store;
mod support;
mod systemd;
mod tls;
mod web_page;
