//! Schema evolution check: is every topic schema of a new model BACKWARD-compatible with the old one?
//!
//! The verdict comes from the registry itself (the same rule production enforces): the old schema is
//! registered under a scratch subject, the new one is tested against it with the registry's
//! compatibility endpoint, and the scratch subject is deleted.

use switchyard_model::SchemaCatalog;

use crate::registry::{RegistryClient, RegistryError};

/// One topic whose new schema breaks readers of the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaking {
    pub topic: String,
    pub reason: String,
}

/// Compares `new` against `old` topic by topic. A topic removed from the model is breaking; a new
/// topic is not.
pub async fn check(
    registry: &RegistryClient,
    old: &SchemaCatalog,
    new: &SchemaCatalog,
    scratch_prefix: &str,
) -> Result<Vec<Breaking>, RegistryError> {
    let mut breaking = Vec::new();
    for topic in old.topics() {
        if new.get(topic).is_err() {
            breaking.push(Breaking {
                topic: topic.to_string(),
                reason: "topic removed from the model (retire it with a deprecation window instead)".into(),
            });
        }
    }
    for topic in new.topics() {
        let Ok(before) = old.get(topic) else { continue };
        let Ok(after) = new.get(topic) else { continue };
        if before.text == after.text {
            continue;
        }
        let subject = format!("{scratch_prefix}.{topic}-value");
        registry.register(&subject, &before.text).await?;
        let verdict = registry.is_compatible(&subject, &after.text).await;
        registry.delete_subject(&subject).await?;
        if !verdict? {
            breaking.push(Breaking {
                topic: topic.to_string(),
                reason:
                    "not BACKWARD-compatible: consumers on the new schema cannot read events written with the old one"
                        .into(),
            });
        }
    }
    Ok(breaking)
}
