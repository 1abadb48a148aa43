//! What every adapter service does around its vendors: build them from configuration, call them
//! through the resilience layer, and close each attempt together with its result event.

use std::{collections::HashMap, future::Future, path::Path, sync::Arc};

use sqlx::PgConnection;
use switchyard_model::{
    EventRecord,
    events::common::{Failure, FailureClass},
};
use switchyard_runtime::{
    HandlerError, Metrics, Outbox, ServiceConfig,
    provider::{Attempts, CallError, Caller, PolicyConfig, ProviderMetrics},
};

use crate::{VendorError, registry::PartnerConnection};

/// What an adapter reads from the partner catalog.
#[derive(serde::Deserialize)]
struct CatalogEntry {
    id: String,
    #[serde(default)]
    rate_limit_per_second: f64,
}

/// An adapter's vendors, by partner id, and the caller that guards every call.
pub struct Partners<V: ?Sized> {
    vendors: HashMap<String, Arc<V>>,
    pub caller: Caller,
}

impl<V: ?Sized> Partners<V> {
    /// Builds the vendors of the `[[partners]]` section and the `[provider]` policy of `file`.
    pub fn load(
        file: Option<&Path>,
        metrics: &Metrics,
        build: impl Fn(&PartnerConnection) -> Result<Arc<V>, String>,
    ) -> Result<Self, String> {
        let connections: Vec<PartnerConnection> =
            ServiceConfig::section(file, "partners", Vec::new()).map_err(|e| e.to_string())?;
        let policy: PolicyConfig =
            ServiceConfig::section(file, "provider", PolicyConfig::default()).map_err(|e| e.to_string())?;
        let caller = Caller::new(policy.policy(), ProviderMetrics::register(metrics));
        let mut vendors = HashMap::new();
        for p in &connections {
            vendors.insert(
                p.id.clone(),
                build(p).map_err(|e| format!("configuration field `{e}`"))?,
            );
            caller.set_rate_limit(&p.id, p.rate_limit_per_second);
        }
        // The partner catalog (the routing policy's `[[partners]]`) owns rate limits; it overrides a
        // connection's own value.
        let catalog: Option<String> = ServiceConfig::section(file, "catalog_file", None).map_err(|e| e.to_string())?;
        if let Some(catalog) = catalog {
            let path = match (Path::new(&catalog), file.and_then(Path::parent)) {
                (p, Some(dir)) if p.is_relative() => dir.join(p),
                (p, _) => p.to_path_buf(),
            };
            if !path.exists() {
                return Err(format!(
                    "configuration field `catalog_file`: {} does not exist",
                    path.display()
                ));
            }
            let entries: Vec<CatalogEntry> = ServiceConfig::section(Some(&path), "partners", Vec::new())
                .map_err(|e| format!("configuration field `catalog_file`: {e}"))?;
            for e in entries.iter().filter(|e| vendors.contains_key(&e.id)) {
                caller.set_rate_limit(&e.id, e.rate_limit_per_second);
            }
        }
        tracing::info!(partners = ?vendors.keys().collect::<Vec<_>>(), "partners configured");
        Ok(Partners { vendors, caller })
    }

    /// The vendor of `partner`, or the failure to report when none is configured.
    pub fn get(&self, partner: &str) -> Result<&Arc<V>, Failure> {
        self.vendors.get(partner).ok_or_else(|| {
            Failure::new(
                FailureClass::ManualRepair,
                "unknown_partner",
                format!("no partner {partner} is configured"),
            )
        })
    }

    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.vendors.keys()
    }

    /// Calls `partner` with retries, circuit breaker and rate limit; a failure comes back in
    /// canonical terms.
    pub async fn call<T, F, Fut>(&self, partner: &str, operation: &str, f: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, VendorError>>,
    {
        match self.caller.call(partner, operation, f).await {
            Ok(v) => Ok(v),
            Err(CallError::CircuitOpen) => Err(Failure::new(
                FailureClass::Transient,
                "circuit_open",
                format!("{partner} is failing; circuit open"),
            )),
            Err(CallError::Failed(e)) => Err(e.to_failure()),
        }
    }
}

/// Writes an adapter's result event and closes its attempt, in the inbox transaction: both happen,
/// or neither.
pub async fn finish(
    conn: &mut PgConnection,
    outbox: &Outbox,
    topic: &str,
    record: &EventRecord,
    key: &str,
    provider_reference: Option<&str>,
    failure: Option<&Failure>,
) -> Result<(), HandlerError> {
    outbox
        .enqueue(conn, topic, record)
        .await
        .map_err(|e| HandlerError::Transient(e.to_string()))?;
    Attempts::finish(
        conn,
        key,
        failure.is_none(),
        provider_reference,
        failure.map(|f| f.message.as_str()),
    )
    .await?;
    Ok(())
}
