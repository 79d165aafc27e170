#![allow(clippy::unwrap_used, clippy::expect_used)]

//! End-to-end tests: the real `fleet` binary, real processes on loopback, real PostgreSQL,
//! real OTLP into the trace desk; assertions are made on the traces the services exported.

mod support;

mod bad_input;
mod checkout_trace;
mod course;
mod fault_admin;
mod lifecycle;
mod load;
mod propagation;
mod quiz;
mod resilience;
mod scenarios;
mod sdk_config;
mod supervisor;
