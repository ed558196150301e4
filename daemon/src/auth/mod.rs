//! API keys and tenants. A key is shown once when created and kept only as its SHA-256; `Authorization:
//! Bearer KEY` selects the key's tenant. With no keys and a loopback listener, requests are served as tenant
//! `default` (the quick start works with any SDK placeholder key); once a key exists, or the listener is
//! reachable from other hosts, a valid key is required unless `auth.mode = "off"`.
mod store;

pub use store::KeyStore;

use crate::sync::{MutexExt, RwLockExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};

/// The tenant of requests made without a key where none is required.
pub const DEFAULT_TENANT: &str = "default";

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Keys required once any exists or when the HTTP listener is not loopback.
    #[default]
    Auto,
    /// A valid key is always required.
    Required,
    /// Keys select a tenant when given and valid; requests without one are tenant `default`.
    Off,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// Keys given in the config, as hashes (`llmopsd hash-key` prints one); keys made with
    /// `llmopsctl keys create` live in the daemon's state database instead.
    pub keys: Vec<ConfigKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigKey {
    pub tenant: String,
    /// A label for people (shown in `llmopsctl keys list`).
    #[serde(default)]
    pub name: String,
    /// Lower-case hex SHA-256 of the key.
    pub sha256: String,
}

/// A key as the daemon knows it; never the key itself.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub created_unix_ms: i64,
    pub revoked: bool,
    /// `config` or `store`.
    pub source: &'static str,
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    /// The key's id, when a key was used.
    pub key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("You didn't provide an API key. Send it as `Authorization: Bearer KEY` (keys are made with `llmopsctl keys create`).")]
    Missing,
    #[error(
        "Incorrect API key provided. Keys are made with `llmopsctl keys create`; `llmopsctl keys list` shows them."
    )]
    Invalid,
    #[error("The API key {key_id} has been revoked.")]
    Revoked { key_id: String },
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("auth.keys[{index}].sha256 = {value:?} is not 64 hex digits (the SHA-256 of the key)")]
    BadHash { index: usize, value: String },
    #[error("auth.keys[{index}].tenant is empty")]
    EmptyTenant { index: usize },
    #[error("key store {path}: {message}")]
    Store { path: String, message: String },
    #[error("no key with id {0}")]
    NoSuchKey(String),
    #[error("{0}")]
    Invalid(String),
}

pub fn sha256_hex(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    hex
}

struct Known {
    record: KeyRecord,
}

pub struct Authenticator {
    mode: AuthMode,
    listener_is_loopback: bool,
    /// By SHA-256 hex.
    known: RwLock<HashMap<String, Known>>,
    store: Mutex<KeyStore>,
}

impl Authenticator {
    /// Loads the config's keys and the store's (at `state_path`).
    pub fn open(config: &AuthConfig, state_path: &Path, listener_is_loopback: bool) -> Result<Self, KeyError> {
        let store = KeyStore::open(state_path)?;
        Self::with_store(config, store, listener_is_loopback)
    }

    pub fn with_store(config: &AuthConfig, store: KeyStore, listener_is_loopback: bool) -> Result<Self, KeyError> {
        let mut known = HashMap::new();
        for (index, key) in config.keys.iter().enumerate() {
            let hash = key.sha256.trim().to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(KeyError::BadHash { index, value: key.sha256.clone() });
            }
            if key.tenant.trim().is_empty() {
                return Err(KeyError::EmptyTenant { index });
            }
            let record = KeyRecord {
                id: format!("config-{}", &hash[..12]),
                tenant: key.tenant.clone(),
                name: key.name.clone(),
                created_unix_ms: 0,
                revoked: false,
                source: "config",
            };
            known.insert(hash, Known { record });
        }
        for (hash, record) in store.all()? {
            known.insert(hash, Known { record });
        }
        Ok(Self { mode: config.mode, listener_is_loopback, known: RwLock::new(known), store: Mutex::new(store) })
    }

    /// Whether requests without a valid key are refused now.
    pub fn key_required(&self) -> bool {
        match self.mode {
            AuthMode::Required => true,
            AuthMode::Off => false,
            AuthMode::Auto => !self.listener_is_loopback || !self.read().is_empty(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Known>> {
        self.known.read_locked()
    }

    /// The tenant for a request's `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let key = authorization
            .and_then(|value| value.trim().strip_prefix("Bearer ").or_else(|| value.trim().strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|key| !key.is_empty());
        let required = self.key_required();
        let Some(key) = key else {
            return if required { Err(AuthError::Missing) } else { Ok(default_principal()) };
        };
        match self.read().get(&sha256_hex(key)) {
            Some(known) if known.record.revoked => Err(AuthError::Revoked { key_id: known.record.id.clone() }),
            Some(known) => Ok(Principal { tenant: known.record.tenant.clone(), key_id: Some(known.record.id.clone()) }),
            // SDKs need some key: where none is required, a placeholder like "unused" is fine.
            None if !required => Ok(default_principal()),
            None => Err(AuthError::Invalid),
        }
    }

    /// Makes a key for `tenant`; returns its record and the key, which is never stored or shown again.
    pub fn create(&self, tenant: &str, name: &str) -> Result<(KeyRecord, String), KeyError> {
        if tenant.trim().is_empty() {
            return Err(KeyError::Invalid("tenant is empty".into()));
        }
        let key = format!("sk-llmops-{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let hash = sha256_hex(&key);
        let record = self.store.locked().insert(&hash, tenant, name)?;
        self.known.write_locked().insert(hash, Known { record: record.clone() });
        Ok((record, key))
    }

    /// Revokes a stored key; config keys are removed from the config instead.
    pub fn revoke(&self, id: &str) -> Result<KeyRecord, KeyError> {
        if id.starts_with("config-") {
            return Err(KeyError::Invalid(format!("{id} is set in the config file: remove it there")));
        }
        self.store.locked().revoke(id)?;
        let mut known = self.known.write_locked();
        let entry = known.values_mut().find(|k| k.record.id == id).ok_or_else(|| KeyError::NoSuchKey(id.into()))?;
        entry.record.revoked = true;
        Ok(entry.record.clone())
    }

    pub fn list(&self) -> Vec<KeyRecord> {
        let mut records: Vec<KeyRecord> = self.read().values().map(|k| k.record.clone()).collect();
        records.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        records
    }
}

/// Who a request is from when no key was used (also in-process requests: evaluation runs).
pub fn default_principal() -> Principal {
    Principal { tenant: DEFAULT_TENANT.into(), key_id: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(config: AuthConfig, loopback: bool) -> Authenticator {
        Authenticator::with_store(&config, KeyStore::in_memory().expect("store"), loopback).expect("auth")
    }

    #[test]
    fn no_keys_on_loopback_serves_everyone_as_default() {
        let auth = auth(AuthConfig::default(), true);
        assert_eq!(auth.authenticate(None).expect("ok").tenant, DEFAULT_TENANT);
        assert_eq!(auth.authenticate(Some("Bearer unused")).expect("ok").tenant, DEFAULT_TENANT);
    }

    #[test]
    fn a_listener_beyond_loopback_requires_a_key() {
        let auth = auth(AuthConfig::default(), false);
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        assert_eq!(auth.authenticate(Some("Bearer unused")), Err(AuthError::Invalid));
    }

    #[test]
    fn created_keys_select_their_tenant_and_revoked_ones_are_refused() {
        let auth = auth(AuthConfig::default(), true);
        let (record, key) = auth.create("acme", "ci").expect("created");
        assert!(key.starts_with("sk-llmops-") && key.len() > 60);
        let principal = auth.authenticate(Some(&format!("Bearer {key}"))).expect("valid");
        assert_eq!((principal.tenant.as_str(), principal.key_id.as_deref()), ("acme", Some(record.id.as_str())));
        // A key now exists: the placeholder no longer passes.
        assert_eq!(auth.authenticate(Some("Bearer unused")), Err(AuthError::Invalid));
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        auth.revoke(&record.id).expect("revoked");
        assert!(matches!(auth.authenticate(Some(&format!("Bearer {key}"))), Err(AuthError::Revoked { .. })));
        assert!(auth.list().iter().all(|r| r.revoked));
    }

    #[test]
    fn config_keys_are_hashes_and_bad_ones_are_named() {
        let key = "sk-config-key";
        let config = AuthConfig {
            mode: AuthMode::Auto,
            keys: vec![ConfigKey { tenant: "team".into(), name: String::new(), sha256: sha256_hex(key) }],
        };
        let auth = auth(config, true);
        assert_eq!(auth.authenticate(Some(&format!("Bearer {key}"))).expect("ok").tenant, "team");
        let bad = AuthConfig {
            mode: AuthMode::Auto,
            keys: vec![ConfigKey { tenant: "t".into(), name: String::new(), sha256: "abc".into() }],
        };
        let error =
            Authenticator::with_store(&bad, KeyStore::in_memory().expect("store"), true).err().expect("refused");
        assert!(error.to_string().contains("auth.keys[0].sha256"), "{error}");
    }

    #[test]
    fn off_mode_never_requires_a_key_but_uses_a_valid_one() {
        let auth = auth(AuthConfig { mode: AuthMode::Off, keys: Vec::new() }, false);
        let (_, key) = auth.create("acme", "").expect("created");
        assert_eq!(auth.authenticate(None).expect("ok").tenant, DEFAULT_TENANT);
        assert_eq!(auth.authenticate(Some(&format!("Bearer {key}"))).expect("ok").tenant, "acme");
    }
}
