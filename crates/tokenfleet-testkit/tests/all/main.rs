//! Integration tests of the provider simulators, run over loopback HTTP.

mod generic;
mod github;
