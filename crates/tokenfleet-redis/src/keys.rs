//! Names of the Redis keys of a store.
//!
//! Every key is `PREFIX:KIND:PART…`. Parts are account names, bucket names,
//! provider scopes and token fingerprints, with `%`, `:`, `{` and `}`
//! percent-encoded, so that a name containing `:` cannot reach another
//! name's key and no part acts as a cluster hash tag.

/// The key names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct KeySpace {
    prefix: String,
}

impl KeySpace {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: escape(prefix),
        }
    }

    /// Returns a key space one level below this one.
    pub(crate) fn scoped(&self, scope: &str) -> Self {
        Self {
            prefix: format!("{}:{}", self.prefix, escape(scope)),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Returns the key of the hash of one (account, bucket) budget.
    pub(crate) fn budget(&self, account: &str, bucket: &str) -> String {
        format!(
            "{}:budget:{}:{}",
            self.prefix,
            escape(account),
            escape(bucket)
        )
    }

    /// Returns the key of the sorted set of reservations in flight on one
    /// budget.
    pub(crate) fn leases(&self, account: &str, bucket: &str) -> String {
        format!(
            "{}:leases:{}:{}",
            self.prefix,
            escape(account),
            escape(bucket)
        )
    }

    /// Returns the key of the hash of an account's cooldown and unlimited
    /// mark.
    pub(crate) fn account(&self, account: &str) -> String {
        format!("{}:account:{}", self.prefix, escape(account))
    }

    /// Returns the key that marks a token invalid, by its fingerprint.
    pub(crate) fn invalid(&self, fingerprint: &str) -> String {
        format!("{}:invalid:{}", self.prefix, escape(fingerprint))
    }
}

fn escape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for ch in part.chars() {
        match ch {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colon_in_name_cannot_collide() {
        let keys = KeySpace::new("tf");
        assert_ne!(keys.budget("a:b", "c"), keys.budget("a", "b:c"));
        assert_eq!(keys.budget("a:b", "c"), "tf:budget:a%3Ab:c");
    }

    #[test]
    fn scope_sits_under_prefix() {
        let keys = KeySpace::new("tf").scoped("github");
        assert_eq!(keys.account("alice"), "tf:github:account:alice");
    }
}
