//! Schema evolution is checked by the registry's own BACKWARD rule, through `yardctl schemas check`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed expectation is the test failing

use std::{path::Path, process::Command};

use switchyard_model::SchemaCatalog;
use switchyard_runtime::compat;
use switchyard_tests::*;

fn repo_schemas() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

/// Copies the repository's schemas into a temp folder and applies `edit` to one topic file.
fn edited_copy(topic: &str, edit: impl Fn(&mut serde_json::Value)) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("schemas-{}", short_id()));
    for sub in ["common", "topics"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        for entry in std::fs::read_dir(repo_schemas().join(sub)).expect("read").flatten() {
            std::fs::copy(entry.path(), dir.join(sub).join(entry.file_name())).expect("copy");
        }
    }
    let file = dir.join("topics").join(format!("{topic}.avsc"));
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    edit(&mut json);
    std::fs::write(&file, serde_json::to_string_pretty(&json).expect("json")).expect("write");
    dir
}

fn add_field(field: serde_json::Value) -> impl Fn(&mut serde_json::Value) {
    move |json| {
        json[0]["fields"].as_array_mut().expect("fields").push(field.clone());
    }
}

#[tokio::test]
async fn incompatible_edit_is_rejected_and_compatible_one_accepted() {
    let stack = Stack::get();
    let registry = stack.registry();
    let base = SchemaCatalog::from_dir(&repo_schemas()).expect("base");

    // A required field with no default: new readers cannot read old events.
    let breaking_dir = edited_copy(
        "kyc.commands.v1",
        add_field(serde_json::json!({"name": "tax_id", "type": "string"})),
    );
    let breaking = SchemaCatalog::from_dir(&breaking_dir).expect("breaking");
    let found = compat::check(&registry, &base, &breaking, &format!("_t.{}", short_id()))
        .await
        .expect("check");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].topic, "kyc.commands.v1");

    // The same field, optional with a default: compatible.
    let fine_dir = edited_copy(
        "kyc.commands.v1",
        add_field(serde_json::json!({"name": "tax_id", "type": ["null", "string"], "default": null})),
    );
    let fine = SchemaCatalog::from_dir(&fine_dir).expect("fine");
    let found = compat::check(&registry, &base, &fine, &format!("_t.{}", short_id()))
        .await
        .expect("check");
    assert!(found.is_empty(), "{found:?}");

    // Changing a field's type is breaking too.
    let retyped = edited_copy("payouts.commands.v1", |json| {
        for f in json[0]["fields"].as_array_mut().expect("fields") {
            if f["name"] == "payout_id" {
                f["type"] = serde_json::json!("long");
            }
        }
    });
    let retyped = SchemaCatalog::from_dir(&retyped).expect("retyped");
    let found = compat::check(&registry, &base, &retyped, &format!("_t.{}", short_id()))
        .await
        .expect("check");
    assert_eq!(
        found.iter().map(|b| b.topic.as_str()).collect::<Vec<_>>(),
        vec!["payouts.commands.v1"]
    );

    // The CLI CI runs exits non-zero on the breaking edit and names the topic.
    let out = Command::new(workspace_bin("yardctl"))
        .args(["schemas", "check", "--schemas-dir"])
        .arg(&breaking_dir)
        .arg("--base-dir")
        .arg(repo_schemas())
        .env("SCHEMA_REGISTRY_URL", &stack.registry)
        .output()
        .expect("run yardctl (build the workspace binaries first)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("BREAK") && stdout.contains("kyc.commands.v1"),
        "{stdout}"
    );
    let out = Command::new(workspace_bin("yardctl"))
        .args(["schemas", "check", "--schemas-dir"])
        .arg(&fine_dir)
        .arg("--base-dir")
        .arg(repo_schemas())
        .env("SCHEMA_REGISTRY_URL", &stack.registry)
        .output()
        .expect("run yardctl");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test]
async fn the_registry_itself_refuses_an_incompatible_registration() {
    let stack = Stack::get();
    let registry = stack.registry();
    let base = SchemaCatalog::from_dir(&repo_schemas()).expect("base");
    let subject = format!("_t.{}.kyc.commands.v1-value", short_id());
    registry
        .register(&subject, &base.get("kyc.commands.v1").expect("t").text)
        .await
        .expect("v1");
    let breaking = SchemaCatalog::from_dir(&edited_copy(
        "kyc.commands.v1",
        add_field(serde_json::json!({"name": "tax_id", "type": "string"})),
    ))
    .expect("breaking");
    let err = registry
        .register(&subject, &breaking.get("kyc.commands.v1").expect("t").text)
        .await
        .expect_err("the global BACKWARD rule must refuse this");
    assert!(
        err.to_string().contains("409") || err.to_string().to_lowercase().contains("incompatible"),
        "{err}"
    );
    registry.delete_subject(&subject).await.expect("cleanup");
}

#[tokio::test]
async fn only_the_registrys_own_not_found_makes_a_schema_id_unknown() {
    use switchyard_runtime::registry::{RegistryClient, RegistryError};
    let stack = Stack::get();
    // The right registry: an id it never issued is unknown (messages with it are dead-lettered).
    let right = stack.registry();
    assert!(matches!(
        right.schema_by_id(987_654_321).await,
        Err(RegistryError::UnknownId(987_654_321))
    ));
    // A wrong base URL also answers 404, but not the registry's code: unavailable (retried), never
    // "unknown", which would dead-letter every message.
    let base = stack.registry.replace("/apis/ccompat/v7", "/apis/wrong/v7");
    let wrong = RegistryClient::new(&base, std::time::Duration::from_secs(5)).expect("client");
    let e = wrong.schema_by_id(1).await.expect_err("no schema through a wrong URL");
    assert!(matches!(e, RegistryError::Unavailable(_)), "{e:?}");
}
