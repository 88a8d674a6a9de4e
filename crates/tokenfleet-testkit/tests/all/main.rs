//! Integration tests of the provider simulators, run over loopback HTTP.

mod gitea;
mod bitbucket;
mod generic;
mod github;
mod gitlab;
