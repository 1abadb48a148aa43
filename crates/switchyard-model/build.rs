//! Embeds every `.avsc` under the workspace's `schemas/` folder, so each binary carries the canonical
//! model it was built with (and registers exactly that at start-up).
use std::{env, fs, path::Path};

fn list(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        panic!("schemas folder {} is missing", dir.display());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) == Some("avsc") {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            out.push((stem, path.display().to_string()));
        }
    }
    out.sort();
    out
}

fn main() {
    let root = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("../../schemas");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut code = String::new();
    for (name, dir) in [("COMMON", "common"), ("TOPICS", "topics")] {
        let dir = root.join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        code.push_str(&format!("pub(crate) static {name}: &[(&str, &str)] = &[\n"));
        for (stem, path) in list(&dir) {
            println!("cargo:rerun-if-changed={path}");
            code.push_str(&format!("    ({stem:?}, include_str!({path:?})),\n"));
        }
        code.push_str("];\n");
    }
    let out = Path::new(&env::var("OUT_DIR").unwrap_or_default()).join("embedded_schemas.rs");
    fs::write(out, code).unwrap_or_else(|e| panic!("cannot write embedded schemas: {e}"));
}
