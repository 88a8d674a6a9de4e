//! The plugins compiled into a program, with a one-line description each.
//!
//! typetag finds a plugin by its `type` name but keeps no description, so
//! every plugin crate also registers a [`PluginInfo`] with
//! [`register_plugin!`](crate::register_plugin). The registration happens at
//! link time, like typetag's, so a plugin written in another crate appears
//! as soon as the program links it.

use std::fmt;

/// The contract a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PluginKind {
    /// A [`Provider`](crate::Provider), named in `[[providers]] type = ...`.
    Provider,
    /// A [`RotationStrategy`](crate::RotationStrategy), named in `[strategy] type = ...`.
    Strategy,
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Provider => "provider",
            Self::Strategy => "strategy",
        })
    }
}

/// One registered plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginInfo {
    /// The contract the plugin implements.
    pub kind: PluginKind,
    /// The `type` name a config file uses, the same as its typetag name.
    pub name: &'static str,
    /// A one-line description of the plugin.
    pub description: &'static str,
}

impl PluginInfo {
    /// Describes a provider plugin.
    pub const fn provider(name: &'static str, description: &'static str) -> Self {
        Self {
            kind: PluginKind::Provider,
            name,
            description,
        }
    }

    /// Describes a strategy plugin.
    pub const fn strategy(name: &'static str, description: &'static str) -> Self {
        Self {
            kind: PluginKind::Strategy,
            name,
            description,
        }
    }
}

inventory::collect!(PluginInfo);

/// Returns every registered plugin, providers first, each kind sorted by name.
/// A name registered twice is listed once.
pub fn plugins() -> Vec<&'static PluginInfo> {
    let mut all: Vec<&'static PluginInfo> = inventory::iter::<PluginInfo>.into_iter().collect();
    all.sort_by(|a, b| (a.kind, a.name).cmp(&(b.kind, b.name)));
    all.dedup_by(|a, b| a.kind == b.kind && a.name == b.name);
    all
}

/// Registers a plugin's `type` name and description for
/// [`plugins`](crate::registry::plugins).
///
/// Write it once in the plugin crate, next to the typetag registration:
///
/// ```
/// tokenfleet_core::register_plugin!(provider "my_forge", "My Forge's REST API");
/// tokenfleet_core::register_plugin!(strategy "least_used", "the token used longest ago");
/// ```
#[macro_export]
macro_rules! register_plugin {
    (provider $name:expr, $description:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::registry::PluginInfo::provider($name, $description)
        }
    };
    (strategy $name:expr, $description:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::registry::PluginInfo::strategy($name, $description)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::register_plugin!(strategy "registry_test_strategy", "a strategy only tests see");

    #[test]
    fn registered_plugin_is_listed() {
        let found = plugins()
            .into_iter()
            .find(|p| p.name == "registry_test_strategy")
            .expect("the test registration is listed");
        assert_eq!(found.kind, PluginKind::Strategy);
        assert_eq!(found.description, "a strategy only tests see");
    }

    #[test]
    fn providers_come_before_strategies() {
        let kinds: Vec<PluginKind> = plugins().iter().map(|p| p.kind).collect();
        let mut sorted = kinds.clone();
        sorted.sort();
        assert_eq!(kinds, sorted);
    }
}
