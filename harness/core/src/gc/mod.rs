//! Global-catalog failover in the address book (KB 929439, issue 19): the directory's
//! global catalogs on a virtual clock ([`timeline`]), what the address-book provider
//! reaches ([`reach`]: the KDC, the referral service, each global catalog's NSPI),
//! the provider's state machine ([`provider`]) and a program's calls across a timeline
//! ([`failover`]).

pub mod failover;
pub mod provider;
pub mod reach;
pub mod timeline;

#[cfg(test)]
pub(crate) mod tests;

pub use failover::{FailoverCase, FailoverRun, LEGEND};
pub use provider::{AbpProfile, ProviderConfig, ProviderState};
pub use timeline::{GcState, Timeline, Topology};
