//! The TOML examples of the provider's documentation build a provider.

use tokenfleet_core::Provider;
// Linking the crate registers its `type` name with typetag.
use tokenfleet_http as _;

const DOCS: &str = include_str!("../../../docs/providers/http.md");

/// Keys of a `[[providers]]` table that the fleet reads itself, before
/// the rest of the table goes to the provider.
const FLEET_KEYS: [&str; 3] = ["name", "tokens", "tokens_env"];

/// Returns the contents of every fenced TOML block, in order.
fn toml_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn documented_tables_build_provider() {
    let blocks = toml_blocks(DOCS);
    assert_eq!(blocks.len(), 2, "the page has two TOML examples");

    let mut document: toml::Table = toml::from_str(&blocks[0]).expect("the example parses");
    let optional: toml::Table = toml::from_str(&blocks[1]).expect("the second example parses");
    let providers = document
        .get_mut("providers")
        .and_then(toml::Value::as_array_mut)
        .expect("the example has [[providers]]");
    let mut table = providers[0].as_table().expect("a table").clone();
    for key in FLEET_KEYS {
        table.remove(key);
    }
    table.extend(optional);

    let provider: Box<dyn Provider> = toml::Value::Table(table)
        .try_into()
        .expect("the documented settings are valid");

    assert_eq!(provider.kind(), "http");
    assert_eq!(provider.default_bucket().as_str(), "core");
    let search = url::Url::parse("https://api.quarry.example/v3/search/x").unwrap();
    assert_eq!(
        provider.bucket_for(&http::Method::GET, &search).as_str(),
        "search"
    );
}
