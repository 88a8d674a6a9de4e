//! Integration tests of the provider simulators, run over loopback HTTP.

mod gitea;
mod bitbucket;
mod github;
mod gitlab;
