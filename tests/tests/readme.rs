//! The README's code comes from the examples: each `<!-- snippet: FILE#NAME -->` block must be
//! the lines between `// ANCHOR: NAME` and `// ANCHOR_END: NAME` in FILE, unindented.

#![cfg(not(target_arch = "wasm32"))]

use std::path::PathBuf;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn region(file: &str, name: &str) -> String {
    let text = std::fs::read_to_string(workspace().join(file)).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != format!("// ANCHOR: {name}"))
        .skip(1)
        .take_while(|l| l.trim() != format!("// ANCHOR_END: {name}"))
        .filter(|l| !l.trim_start().starts_with("// ANCHOR"))
        .collect();
    assert!(!lines.is_empty(), "{file} has no anchor {name}");
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn readme_snippets_match_the_examples() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let mut checked = 0;
    for (i, _) in readme.match_indices("<!-- snippet: ") {
        let rest = &readme[i + "<!-- snippet: ".len()..];
        let (source, rest) = rest.split_once(" -->").unwrap();
        let (file, name) = source.split_once('#').unwrap();
        let block = rest
            .trim_start()
            .strip_prefix("```rust\n")
            .expect("a rust block follows");
        let block = &block[..block.find("\n```").unwrap()];
        assert_eq!(
            block,
            region(file, name),
            "README's {source} is stale: copy it from {file} again"
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} snippets found");
}
