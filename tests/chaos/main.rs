#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The chaos suite: each test starts what it needs on free ports (and, for the database, a
//! throwaway PostgreSQL cluster of its own) and asserts figures, not just status codes.

#[path = "../e2e/support.rs"]
mod support;

mod collector;
mod db_restart;
