//! The registry: writes go to SQLite and then update the in-memory cache under the same lock, so the request
//! path reads only memory. The cache holds every prompt's newest version number and labels (at most 1,000
//! prompts of 32 labels) and up to [`CACHED_VERSIONS`] version bodies, filled at start with the versions labels
//! and `latest` point at, on push and on label moves. Versions are immutable, so a cached body never goes
//! stale; only labels and `latest` change, and only through this type.
use super::model::{unified_diff, AuditEntry, Gate, NewVersion, PromptSummary, PromptVersion};
use super::refs::{PromptRef, RefKind};
use super::render::{Rendered, Renderer};
use super::store::Store;
use super::{check_label, check_name, Author, PromptError};
use crate::sync::{MutexExt, RwLockExt};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

/// Version bodies kept in memory (each at most 64 KiB): 16 MiB at worst.
pub const CACHED_VERSIONS: usize = 256;

pub struct PromptRegistry {
    store: Mutex<Store>,
    index: RwLock<HashMap<String, PromptSummary>>,
    bodies: Mutex<HashMap<(String, u32), Arc<PromptVersion>>>,
    renderer: Renderer,
}

impl PromptRegistry {
    /// Opens the tables in `state.db` and warms the cache.
    pub fn open(path: &Path) -> Result<Self, PromptError> {
        let store = Store::open(path)?;
        let summaries = store.summaries()?;
        let registry = Self {
            store: Mutex::new(store),
            index: RwLock::new(summaries.iter().map(|s| (s.name.clone(), s.clone())).collect()),
            bodies: Mutex::new(HashMap::new()),
            renderer: Renderer::new(),
        };
        for summary in summaries {
            let wanted = summary.labels.values().copied().chain(std::iter::once(summary.latest));
            for version in wanted {
                if registry.bodies.locked().len() >= CACHED_VERSIONS {
                    return Ok(registry);
                }
                registry.body(&summary.name, version)?;
            }
        }
        Ok(registry)
    }

    /// Every prompt, by name.
    pub fn list(&self) -> Vec<PromptSummary> {
        let mut all: Vec<PromptSummary> = self.index.read_locked().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The version `reference` names (a bare name meaning `default`), from memory when cached.
    pub fn resolve(&self, reference: &PromptRef, default: RefKind) -> Result<Arc<PromptVersion>, PromptError> {
        Ok(self.get(reference, default)?.0)
    }

    /// The version and its prompt's summary.
    pub fn get(
        &self,
        reference: &PromptRef,
        default: RefKind,
    ) -> Result<(Arc<PromptVersion>, PromptSummary), PromptError> {
        let summary = self
            .index
            .read_locked()
            .get(&reference.name)
            .cloned()
            .ok_or_else(|| PromptError::NoSuchPrompt(reference.name.clone()))?;
        let number = version_number(&summary, &reference.or_default(default))?;
        Ok((self.body(&reference.name, number)?, summary))
    }

    /// Renders `version` with a request's variables.
    pub fn render(
        &self,
        version: &PromptVersion,
        variables: &BTreeMap<String, String>,
    ) -> Result<Rendered, PromptError> {
        self.renderer.render(version, variables)
    }

    /// The newest `limit` audit entries of `name` (at most 1,000), newest first.
    pub fn history(&self, name: &str, limit: usize) -> Result<Vec<AuditEntry>, PromptError> {
        check_name("prompt name", name)?;
        self.store.locked().history(name, limit.clamp(1, 1_000))
    }

    /// Adds a version (templates compiled and checked first). Returns it, and false when its content equalled
    /// the newest version's, which is returned instead.
    pub fn push(
        &self,
        name: &str,
        content: NewVersion,
        by: &Author,
    ) -> Result<(Arc<PromptVersion>, bool), PromptError> {
        check_name("prompt name", name)?;
        content.check()?;
        let variables = self.renderer.check(&content)?;
        let mut store = self.store.locked();
        let pushed = store.push(name, &content, &variables, by.as_str(), crate::clock::unix_ms())?;
        let version = Arc::new(pushed.version);
        if pushed.created {
            let mut index = self.index.write_locked();
            let summary = index
                .entry(name.to_string())
                .or_insert_with(|| PromptSummary { name: name.to_string(), ..PromptSummary::default() });
            summary.latest = version.version;
            summary.updated_at_unix_ms = version.created_at_unix_ms;
        }
        self.cache(version.clone());
        Ok((version, pushed.created))
    }

    /// Points `label` at `version`. Returns that version and where the label pointed before.
    pub fn set_label(
        &self,
        name: &str,
        label: &str,
        version: u32,
        by: &Author,
    ) -> Result<(Arc<PromptVersion>, Option<u32>), PromptError> {
        self.set_label_gated(name, label, version, by, &Gate::default())
    }

    /// [`Self::set_label`], with the evaluation run that gated the move kept in the audit.
    pub fn set_label_gated(
        &self,
        name: &str,
        label: &str,
        version: u32,
        by: &Author,
        gate: &Gate,
    ) -> Result<(Arc<PromptVersion>, Option<u32>), PromptError> {
        check_name("prompt name", name)?;
        check_label(label)?;
        let now = crate::clock::unix_ms();
        let mut store = self.store.locked();
        let from = store.set_label(name, label, version, by.as_str(), now, gate)?;
        let body = match store.version(name, version)? {
            Some(body) => Arc::new(body),
            None => return Err(PromptError::Store(format!("{name}@{version} vanished"))),
        };
        // Cached before the label points at it: the next request finds it in memory.
        self.cache(body.clone());
        if let Some(summary) = self.index.write_locked().get_mut(name) {
            summary.labels.insert(label.to_string(), version);
            summary.updated_at_unix_ms = now;
        }
        Ok((body, from))
    }

    /// Both versions and a unified diff of them (empty when identical).
    pub fn diff(
        &self,
        name: &str,
        from: &RefKind,
        to: &RefKind,
    ) -> Result<(Arc<PromptVersion>, Arc<PromptVersion>, String), PromptError> {
        let reference = |kind: &RefKind| PromptRef { name: name.to_string(), kind: kind.clone() };
        let (old, _) = self.get(&reference(from), RefKind::Latest)?;
        let (new, _) = self.get(&reference(to), RefKind::Latest)?;
        let diff = unified_diff(name, &old, &new);
        Ok((old, new, diff))
    }

    /// A version body: from the cache, else read once from SQLite and cached.
    fn body(&self, name: &str, version: u32) -> Result<Arc<PromptVersion>, PromptError> {
        if let Some(body) = self.bodies.locked().get(&(name.to_string(), version)) {
            return Ok(body.clone());
        }
        let body = self.store.locked().version(name, version)?;
        let body = Arc::new(body.ok_or_else(|| PromptError::Store(format!("{name}@{version} is not stored")))?);
        self.cache(body.clone());
        Ok(body)
    }

    fn cache(&self, body: Arc<PromptVersion>) {
        let mut bodies = self.bodies.locked();
        let key = (body.name.clone(), body.version);
        if bodies.len() >= CACHED_VERSIONS && !bodies.contains_key(&key) {
            // Any one goes: a miss costs one SQLite read, and the versions in use come straight back.
            if let Some(evicted) = bodies.keys().next().cloned() {
                bodies.remove(&evicted);
            }
        }
        bodies.insert(key, body);
    }
}

/// The version number `kind` names in `summary`, or why there is none.
fn version_number(summary: &PromptSummary, kind: &RefKind) -> Result<u32, PromptError> {
    match kind {
        RefKind::Version(version) if *version >= 1 && *version <= summary.latest => Ok(*version),
        RefKind::Version(version) => {
            Err(PromptError::NoSuchVersion { name: summary.name.clone(), version: *version, latest: summary.latest })
        }
        RefKind::Latest | RefKind::Default => Ok(summary.latest),
        RefKind::Label(label) => summary.labels.get(label).copied().ok_or_else(|| PromptError::NoSuchLabel {
            name: summary.name.clone(),
            label: label.clone(),
            known: if summary.labels.is_empty() {
                "none; set one with `llmopsctl prompts label`".to_string()
            } else {
                summary.labels.iter().map(|(l, v)| format!("{l} -> {v}")).collect::<Vec<_>>().join(", ")
            },
        }),
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
