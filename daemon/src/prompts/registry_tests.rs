//! The registry against a real `state.db`: versions, labels, audit, the cache across writes and restarts, and
//! every count bound refused with a reason.
use super::*;
use crate::prompts::model::{AuditAction, PromptMessage};
use crate::prompts::{limits, Author, PromptError};

fn by(claim: &str) -> Author {
    Author::new(claim, None).expect("valid author")
}

fn content(text: &str) -> NewVersion {
    let messages = vec![
        PromptMessage { role: "system".into(), content: "You answer for {{ company }}.".into() },
        PromptMessage { role: "user".into(), content: text.into() },
    ];
    NewVersion::from_parts(messages, r#"{"temperature":0.1}"#, "").expect("valid")
}

fn open(dir: &tempfile::TempDir) -> PromptRegistry {
    PromptRegistry::open(&dir.path().join("state.db")).expect("open")
}

fn at(name: &str, kind: RefKind) -> PromptRef {
    PromptRef { name: name.into(), kind }
}

#[test]
fn versions_count_up_labels_move_and_every_change_is_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open(&dir);
    let (v1, created) = registry.push("support", content("Q: {{ question }}"), &by("alice")).expect("push 1");
    assert_eq!((v1.version, created), (1, true));
    assert_eq!(v1.variables, ["company", "question"]);
    assert_eq!(v1.sha256, v1.content.sha256());
    let (v2, _) = registry.push("support", content("Question: {{ question }}"), &by("")).expect("push 2");
    assert_eq!((v2.version, v2.created_by.as_str()), (2, "local"));
    // The same content again adds nothing.
    let (again, created) =
        registry.push("support", content("Question: {{ question }}"), &by("bob")).expect("push again");
    assert_eq!((again.version, created), (2, false));

    let (_, from) = registry.set_label("support", "production", 1, &by("alice")).expect("label");
    assert_eq!(from, None);
    let production = at("support", RefKind::Label("production".into()));
    assert_eq!(registry.resolve(&production, RefKind::Latest).expect("resolve").version, 1);
    let (_, from) = registry.set_label("support", "production", 2, &by("bob")).expect("move");
    assert_eq!(from, Some(1));
    assert_eq!(registry.resolve(&production, RefKind::Latest).expect("resolve").version, 2, "the move applies at once");
    let bare = at("support", RefKind::Default);
    assert_eq!(registry.resolve(&bare, RefKind::Label("production".into())).expect("bare").version, 2);
    assert_eq!(registry.resolve(&at("support", RefKind::Latest), RefKind::Latest).expect("latest").version, 2);
    assert_eq!(registry.resolve(&at("support", RefKind::Version(1)), RefKind::Latest).expect("v1").version, 1);

    let history = registry.history("support", 100).expect("history");
    let summary: Vec<(AuditAction, &str, Option<u32>, u32, &str)> =
        history.iter().map(|e| (e.action, e.label.as_str(), e.from_version, e.to_version, e.by.as_str())).collect();
    assert_eq!(
        summary,
        [
            (AuditAction::Label, "production", Some(1), 2, "bob"),
            (AuditAction::Label, "production", None, 1, "alice"),
            (AuditAction::Push, "", Some(1), 2, "local"),
            (AuditAction::Push, "", None, 1, "alice"),
        ],
        "newest first; the identical push left no entry"
    );

    let listed = registry.list();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].latest, listed[0].labels.get("production")), (2, Some(&2)));

    let (old, new, diff) =
        registry.diff("support", &RefKind::Version(1), &RefKind::Label("production".into())).expect("diff");
    assert_eq!((old.version, new.version), (1, 2));
    assert!(diff.contains("-Q: {{ question }}\n+Question: {{ question }}\n"), "{diff}");
}

#[test]
fn the_registry_survives_a_restart_and_versions_are_immutable() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let registry = open(&dir);
        registry.push("support", content("{{ question }}"), &by("alice")).expect("push");
        registry.set_label("support", "staging", 1, &by("alice")).expect("label");
    }
    let registry = open(&dir);
    let staging = at("support", RefKind::Label("staging".into()));
    let version = registry.resolve(&staging, RefKind::Latest).expect("resolve after restart");
    assert_eq!((version.version, version.created_by.as_str()), (1, "alice"));
    assert_eq!(version.content, content("{{ question }}"));

    let conn = rusqlite::Connection::open(dir.path().join("state.db")).expect("raw connection");
    let update = conn.execute("UPDATE prompt_versions SET model = 'other' WHERE name = 'support'", []);
    assert!(update.expect_err("refused").to_string().contains("immutable"));
}

#[test]
fn unknown_names_labels_and_versions_say_which() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open(&dir);
    registry.push("support", content("{{ question }}"), &by("")).expect("push");
    let error = |reference: PromptRef| registry.resolve(&reference, RefKind::Latest).expect_err("unknown");
    assert_eq!(error(at("nope", RefKind::Latest)), PromptError::NoSuchPrompt("nope".into()));
    let label = error(at("support", RefKind::Label("production".into()))).to_string();
    assert!(label.contains("no label `production`") && label.contains("none"), "{label}");
    let version = error(at("support", RefKind::Version(7))).to_string();
    assert!(version.contains("no version 7 (its versions: 1 to 1)"), "{version}");
    assert!(matches!(registry.set_label("support", "prod", 2, &by("")), Err(PromptError::NoSuchVersion { .. })));
    assert!(matches!(registry.set_label("nope", "prod", 1, &by("")), Err(PromptError::NoSuchPrompt(_))));
    assert!(matches!(registry.set_label("support", "latest", 1, &by("")), Err(PromptError::Invalid(_))));
    assert!(matches!(registry.push("bad name", content("x"), &by("")), Err(PromptError::Invalid(_))));
    let syntax = registry.push("support", content("{{ unclosed"), &by("")).expect_err("syntax").to_string();
    assert!(syntax.starts_with("message 2 (user): template error"), "{syntax}");
}

/// Fills `name` with `count` versions straight in SQLite (one transaction), as if pushed long ago.
fn fill_versions(dir: &tempfile::TempDir, names: &[String], count: u32) {
    let mut conn = rusqlite::Connection::open(dir.path().join("state.db")).expect("raw connection");
    let tx = conn.transaction().expect("tx");
    for name in names {
        for version in 1..=count {
            tx.execute(
                "INSERT INTO prompt_versions VALUES (?1, ?2, '[{\"role\":\"user\",\"content\":\"x\"}]', '{}', '', ?3, '[]', 0, 't')",
                rusqlite::params![name, version, format!("sha-{version}")],
            )
            .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

#[test]
fn count_bounds_are_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(&dir));
    fill_versions(&dir, &["full".to_string()], limits::MAX_VERSIONS);
    let names: Vec<String> = (1..limits::MAX_PROMPTS).map(|i| format!("p{i}")).collect();
    fill_versions(&dir, &names, 1);
    let registry = open(&dir);
    let versions = registry.push("full", content("new"), &by("")).expect_err("too many versions").to_string();
    assert!(versions.contains("has 1000 versions"), "{versions}");
    let prompts = registry.push("one-too-many", content("new"), &by("")).expect_err("too many prompts").to_string();
    assert!(prompts.contains("there are 1000 prompts"), "{prompts}");
    // An existing prompt still takes versions.
    assert_eq!(registry.push("p1", content("new"), &by("")).expect("push").0.version, 2);

    for i in 0..limits::MAX_LABELS_PER_PROMPT {
        registry.set_label("p1", &format!("l{i}"), 1, &by("")).expect("label");
    }
    let labels = registry.set_label("p1", "one-more", 1, &by("")).expect_err("too many labels").to_string();
    assert!(labels.contains("32 labels"), "{labels}");
    registry.set_label("p1", "l0", 2, &by("")).expect("moving an existing label is fine");
}

#[test]
fn the_audit_keeps_the_newest_entries_per_prompt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open(&dir);
    registry.push("support", content("{{ question }}"), &by("")).expect("push");
    {
        let mut conn = rusqlite::Connection::open(dir.path().join("state.db")).expect("raw connection");
        let tx = conn.transaction().expect("tx");
        for _ in 0..limits::MAX_AUDIT_PER_PROMPT {
            tx.execute(
                "INSERT INTO prompt_audit (name, at_ms, by, action, label, from_version, to_version)
                 VALUES ('support', 0, 'old', 'label', 'x', NULL, 1)",
                [],
            )
            .expect("insert");
        }
        tx.commit().expect("commit");
    }
    registry.set_label("support", "production", 1, &by("new")).expect("label");
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).expect("raw connection");
    let count: i64 =
        conn.query_row("SELECT COUNT(*) FROM prompt_audit WHERE name = 'support'", [], |r| r.get(0)).expect("count");
    assert_eq!(count, i64::try_from(limits::MAX_AUDIT_PER_PROMPT).expect("fits"));
    assert_eq!(registry.history("support", 1).expect("history")[0].by, "new");
}

#[test]
fn a_state_db_from_before_gated_moves_gains_the_gate_columns_and_keeps_its_audit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let old = rusqlite::Connection::open(&path).expect("old db");
    old.execute_batch(
        "CREATE TABLE prompt_audit (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, at_ms INTEGER NOT NULL,
           by TEXT NOT NULL, action TEXT NOT NULL, label TEXT NOT NULL, from_version INTEGER, to_version INTEGER NOT NULL);
         INSERT INTO prompt_audit (name, at_ms, by, action, label, from_version, to_version)
           VALUES ('support', 1, 'alice', 'label', 'production', NULL, 1);",
    )
    .expect("old schema");
    drop(old);
    let registry = PromptRegistry::open(&path).expect("open migrates");
    registry.push("support", content("Q: {{ question }}"), &by("bob")).expect("push");
    let gate = Gate { run: "run-7".into(), forced: true };
    registry.set_label_gated("support", "production", 1, &by("carol"), &gate).expect("gated move");
    let history = registry.history("support", 10).expect("history");
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].gate, gate);
    assert_eq!((history[2].by.as_str(), &history[2].gate), ("alice", &Gate::default()), "the old entry is kept");
}
