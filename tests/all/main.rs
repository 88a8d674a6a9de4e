//! End-to-end tests of the facade against the GitHub simulator and plain
//! wiremock servers on 127.0.0.1.

mod concurrency;
mod config;
mod enterprise;
mod limits;
mod pagination;
mod redirects;
mod redis;
mod responses;
mod rotation;
mod secondary;
mod secrets;
mod support;
