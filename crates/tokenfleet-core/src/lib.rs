//! Core of tokenfleet: tokens, the provider and strategy contracts, and the token pool.
//!
//! This crate has no HTTP client and knows no provider. Providers and
//! rotation strategies are plugins in their own crates, registered with
//! typetag so that a config file names them by `type`.

#![deny(missing_docs)]

pub mod clock;
pub mod error;
pub mod link;
pub mod pool;
pub mod provider;
pub mod random;
pub mod registry;
pub mod repository;
pub mod source;
pub mod status;
pub mod store;
pub mod strategy;
pub mod token;
pub mod verdict;

pub use clock::{Clock, ManualClock, SystemClock, TokioClock};
pub use error::{Error, Exhausted};
pub use pool::{Lease, TokenPool, TokenPoolBuilder, WaitPolicy};
pub use provider::{Probe, ProbeError, Provider, ResponseView, Transport, TransportError};
pub use repository::{ListingError, PageView, Repository, RepositoryPage};
pub use source::{SourceError, SourcedSecret, TokenSource};
pub use status::{BucketSnapshot, LimitKind, TokenSnapshot, TokenStatus};
pub use store::{MemoryStore, StateStore};
pub use strategy::{Candidate, ChoiceContext, RotationStrategy};
pub use token::{Token, TokenId};
pub use verdict::{Bucket, Observation, Outcome, Verdict};

/// Re-exported so plugin crates register with the same typetag and async-trait.
pub use async_trait::async_trait;
#[doc(hidden)]
pub use inventory;
#[doc(hidden)]
pub use typetag;
