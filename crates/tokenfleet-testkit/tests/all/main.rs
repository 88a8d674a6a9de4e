//! Integration tests of the provider simulators, run over loopback HTTP.

mod bitbucket;
mod generic;
mod gitea;
mod github;
mod gitlab;
