//! Integration tests of the provider simulators, run over loopback HTTP.

mod gitea;
mod github;
mod gitlab;
