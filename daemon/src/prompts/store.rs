//! The prompt tables in `state.db` (own connection, WAL, busy timeout, like the other state stores; `PRAGMA
//! user_version` is left to the trace store). Versions are immutable (a trigger refuses updates); labels are
//! upserted; every push and label move adds an audit row in the same transaction. Count bounds are checked
//! here, inside the write transaction, so the cache can never let one slip.
use super::model::{AuditAction, AuditEntry, Gate, NewVersion, PromptMessage, PromptSummary, PromptVersion};
use super::{limits, PromptError};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::collections::BTreeMap;
use std::path::Path;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS prompt_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    -- JSON: [{role, content}]
    messages TEXT NOT NULL,
    -- JSON object; '{}' when none
    parameters TEXT NOT NULL,
    model TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    -- JSON: the variables the templates use, sorted
    variables TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TRIGGER IF NOT EXISTS prompt_versions_immutable BEFORE UPDATE ON prompt_versions
BEGIN SELECT RAISE(ABORT, 'prompt versions are immutable'); END;
CREATE TABLE IF NOT EXISTS prompt_labels (
    name TEXT NOT NULL,
    label TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (name, label)
);
CREATE TABLE IF NOT EXISTS prompt_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    by TEXT NOT NULL,
    -- 'push' or 'label'
    action TEXT NOT NULL,
    -- '' for pushes
    label TEXT NOT NULL,
    -- NULL: none (a first version, a new label)
    from_version INTEGER,
    to_version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS prompt_audit_by_name ON prompt_audit (name, id);";

pub(super) struct Store {
    conn: Connection,
}

/// What a push did.
pub(super) struct Pushed {
    pub version: PromptVersion,
    /// False when the content equalled the newest version, which is returned instead.
    pub created: bool,
}

fn to_u32(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, PromptError> {
        let conn = crate::state_db::open(path, SCHEMA).map_err(|error| PromptError::Store(error.to_string()))?;
        add_gate_columns(&conn)?;
        Ok(Self { conn })
    }

    /// Every prompt's newest version and labels (what the request path's cache holds).
    pub fn summaries(&self) -> Result<Vec<PromptSummary>, PromptError> {
        let mut prompts: BTreeMap<String, PromptSummary> = BTreeMap::new();
        let mut statement =
            self.conn.prepare("SELECT name, MAX(version), MAX(created_at_ms) FROM prompt_versions GROUP BY name")?;
        let rows =
            statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
        for row in rows {
            let (name, latest, at) = row?;
            let summary = PromptSummary {
                name: name.clone(),
                latest: to_u32(latest),
                labels: BTreeMap::new(),
                updated_at_unix_ms: at,
            };
            prompts.insert(name, summary);
        }
        let mut statement = self.conn.prepare("SELECT name, label, version, updated_at_ms FROM prompt_labels")?;
        let rows = statement.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
        })?;
        for row in rows {
            let (name, label, version, at) = row?;
            if let Some(summary) = prompts.get_mut(&name) {
                summary.labels.insert(label, to_u32(version));
                summary.updated_at_unix_ms = summary.updated_at_unix_ms.max(at);
            }
        }
        Ok(prompts.into_values().collect())
    }

    pub fn version(&self, name: &str, version: u32) -> Result<Option<PromptVersion>, PromptError> {
        let row = self
            .conn
            .query_row(
                "SELECT messages, parameters, model, sha256, variables, created_at_ms, created_by
                 FROM prompt_versions WHERE name = ?1 AND version = ?2",
                params![name, version],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                },
            )
            .optional()?;
        let Some((messages, parameters, model, sha256, variables, created_at_unix_ms, created_by)) = row else {
            return Ok(None);
        };
        let corrupt = |what: &str, e: serde_json::Error| PromptError::Store(format!("{name}@{version}: {what}: {e}"));
        let messages: Vec<PromptMessage> = serde_json::from_str(&messages).map_err(|e| corrupt("messages", e))?;
        let parameters = serde_json::from_str(&parameters).map_err(|e| corrupt("parameters", e))?;
        let variables = serde_json::from_str(&variables).map_err(|e| corrupt("variables", e))?;
        Ok(Some(PromptVersion {
            name: name.to_string(),
            version,
            content: NewVersion { messages, parameters, model },
            sha256,
            created_at_unix_ms,
            created_by,
            variables,
        }))
    }

    /// Adds the next version of `name` (creating the prompt), unless its content equals the newest version's.
    pub fn push(
        &mut self,
        name: &str,
        content: &NewVersion,
        variables: &[String],
        by: &str,
        now_ms: i64,
    ) -> Result<Pushed, PromptError> {
        let sha256 = content.sha256();
        let tx = self.conn.transaction()?;
        let latest: Option<(i64, String)> = tx
            .query_row(
                "SELECT version, sha256 FROM prompt_versions WHERE name = ?1 ORDER BY version DESC LIMIT 1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((latest, latest_sha)) = &latest {
            if *latest_sha == sha256 {
                drop(tx);
                let version = self.version(name, to_u32(*latest))?;
                let version = version.ok_or_else(|| PromptError::Store(format!("{name}@{latest} vanished")))?;
                return Ok(Pushed { version, created: false });
            }
        }
        let next = match latest {
            Some((latest, _)) if to_u32(latest) >= limits::MAX_VERSIONS => {
                return Err(PromptError::Full(format!(
                    "prompt `{name}` has {} versions, the most a prompt may have; push under a new name",
                    limits::MAX_VERSIONS
                )));
            }
            Some((latest, _)) => to_u32(latest) + 1,
            None => {
                let prompts: i64 =
                    tx.query_row("SELECT COUNT(DISTINCT name) FROM prompt_versions", [], |r| r.get(0))?;
                if usize::try_from(prompts).unwrap_or(usize::MAX) >= limits::MAX_PROMPTS {
                    return Err(PromptError::Full(format!(
                        "there are {} prompts, the most llmopsd keeps; new names are refused",
                        limits::MAX_PROMPTS
                    )));
                }
                1
            }
        };
        tx.execute(
            "INSERT INTO prompt_versions
             (name, version, messages, parameters, model, sha256, variables, created_at_ms, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                name,
                next,
                json(&content.messages)?,
                json(&content.parameters)?,
                content.model,
                sha256,
                json(variables)?,
                now_ms,
                by
            ],
        )?;
        audit(&tx, name, now_ms, by, AuditAction::Push, "", (next > 1).then(|| next - 1), next, &Gate::default())?;
        tx.commit()?;
        let version = PromptVersion {
            name: name.to_string(),
            version: next,
            content: content.clone(),
            sha256,
            created_at_unix_ms: now_ms,
            created_by: by.to_string(),
            variables: variables.to_vec(),
        };
        Ok(Pushed { version, created: true })
    }

    /// Points `label` at `version`; returns where it pointed before.
    pub fn set_label(
        &mut self,
        name: &str,
        label: &str,
        version: u32,
        by: &str,
        now_ms: i64,
        gate: &Gate,
    ) -> Result<Option<u32>, PromptError> {
        let tx = self.conn.transaction()?;
        let latest: Option<i64> =
            tx.query_row("SELECT MAX(version) FROM prompt_versions WHERE name = ?1", [name], |r| r.get(0))?;
        let Some(latest) = latest.map(to_u32) else { return Err(PromptError::NoSuchPrompt(name.to_string())) };
        if version == 0 || version > latest {
            return Err(PromptError::NoSuchVersion { name: name.to_string(), version, latest });
        }
        let from: Option<i64> = tx
            .query_row("SELECT version FROM prompt_labels WHERE name = ?1 AND label = ?2", [name, label], |r| r.get(0))
            .optional()?;
        if from.is_none() {
            let labels: i64 =
                tx.query_row("SELECT COUNT(*) FROM prompt_labels WHERE name = ?1", [name], |r| r.get(0))?;
            if usize::try_from(labels).unwrap_or(usize::MAX) >= limits::MAX_LABELS_PER_PROMPT {
                return Err(PromptError::Full(format!(
                    "prompt `{name}` has {} labels, the most a prompt may have; move one instead",
                    limits::MAX_LABELS_PER_PROMPT
                )));
            }
        }
        tx.execute(
            "INSERT INTO prompt_labels (name, label, version, updated_at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name, label) DO UPDATE SET version = excluded.version, updated_at_ms = excluded.updated_at_ms",
            params![name, label, version, now_ms],
        )?;
        let from = from.map(to_u32);
        audit(&tx, name, now_ms, by, AuditAction::Label, label, from, version, gate)?;
        tx.commit()?;
        Ok(from)
    }

    /// The newest `limit` audit entries of `name`, newest first.
    pub fn history(&self, name: &str, limit: usize) -> Result<Vec<AuditEntry>, PromptError> {
        let mut statement = self.conn.prepare(
            "SELECT at_ms, by, action, label, from_version, to_version, gate_run, forced FROM prompt_audit
             WHERE name = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement.query_map(params![name, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, i64>(5)?,
                Gate { run: r.get(6)?, forced: r.get(7)? },
            ))
        })?;
        let mut entries = Vec::new();
        for row in rows {
            let (at_unix_ms, by, action, label, from, to, gate) = row?;
            let action = AuditAction::parse(&action)
                .ok_or_else(|| PromptError::Store(format!("audit of {name}: unknown action {action:?}")))?;
            entries.push(AuditEntry {
                at_unix_ms,
                by,
                action,
                label,
                from_version: from.map(to_u32),
                to_version: to_u32(to),
                gate,
            });
        }
        Ok(entries)
    }
}

/// Adds an audit row and drops the oldest of `name` past [`limits::MAX_AUDIT_PER_PROMPT`].
#[allow(clippy::too_many_arguments)]
fn audit(
    tx: &Transaction<'_>,
    name: &str,
    at_ms: i64,
    by: &str,
    action: AuditAction,
    label: &str,
    from: Option<u32>,
    to: u32,
    gate: &Gate,
) -> Result<(), PromptError> {
    tx.execute(
        "INSERT INTO prompt_audit (name, at_ms, by, action, label, from_version, to_version, gate_run, forced)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![name, at_ms, by, action.as_str(), label, from, to, gate.run, gate.forced],
    )?;
    let keep = i64::try_from(limits::MAX_AUDIT_PER_PROMPT).unwrap_or(i64::MAX);
    tx.execute(
        "DELETE FROM prompt_audit WHERE name = ?1 AND id <= (
             SELECT id FROM prompt_audit WHERE name = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        params![name, keep],
    )?;
    Ok(())
}

/// The audit's gate columns, added to a `state.db` made before label moves could be gated.
fn add_gate_columns(conn: &Connection) -> Result<(), PromptError> {
    let mut statement = conn.prepare("SELECT name FROM pragma_table_info('prompt_audit')")?;
    let columns: Vec<String> = statement.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    if !columns.iter().any(|c| c == "gate_run") {
        conn.execute_batch(
            "ALTER TABLE prompt_audit ADD COLUMN gate_run TEXT NOT NULL DEFAULT '';
             ALTER TABLE prompt_audit ADD COLUMN forced INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    Ok(())
}

/// A JSON column's text.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, PromptError> {
    serde_json::to_string(value).map_err(|e| PromptError::Store(e.to_string()))
}
