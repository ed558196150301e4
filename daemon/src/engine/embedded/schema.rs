//! Which JSON Schemas constrained decoding can enforce, checked before llama.cpp's converter sees them. The
//! converter skips what it does not know (a keyword, a regular expression it cannot turn into a grammar) and
//! the answer would then not validate: every keyword here is one the grammar enforces or a pure annotation,
//! anything else gets a 400 naming it. Bounds keep a hostile schema from becoming a huge grammar.
use serde_json::{Map, Value};

/// Keywords that only describe (the grammar need not enforce them).
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "$schema",
    "$id",
    "$comment",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Keywords the grammar enforces (llama.cpp's `json-schema-to-grammar`).
const ENFORCED: &[&str] = &[
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "$defs",
    "definitions",
    "pattern",
    "format",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
];

const FORMATS: &[&str] = &["date", "time", "date-time", "uuid"];

/// The largest schema taken, as JSON text.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Schemas nested deeper than this are refused (each level is a grammar rule the sampler walks).
pub const MAX_DEPTH: usize = 32;
/// minItems/maxItems/minLength/maxLength and `{m,n}` in patterns: each unit is a copy of a grammar rule.
pub const MAX_REPEAT: u64 = 1000;
/// Properties, enum values and alternatives, over the whole schema.
pub const MAX_NODES: usize = 5000;
pub const MAX_PATTERN_BYTES: usize = 1024;

/// Why a schema cannot be enforced; `path` is a JSON pointer into it.
#[derive(Debug, PartialEq)]
pub struct Unenforceable {
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for Unenforceable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at {}: {}", if self.path.is_empty() { "#" } else { &self.path }, self.reason)
    }
}

/// Checks a whole schema: size, then every subschema.
pub fn check(schema: &Value) -> Result<(), Unenforceable> {
    let bytes = schema.to_string().len();
    if bytes > MAX_SCHEMA_BYTES {
        return Err(fail("", format!("the schema is {bytes} bytes; at most {MAX_SCHEMA_BYTES} are accepted")));
    }
    let mut nodes = 0;
    Walk { nodes: &mut nodes }.schema(schema, "", 0)
}

fn fail(path: &str, reason: impl Into<String>) -> Unenforceable {
    Unenforceable { path: path.to_string(), reason: reason.into() }
}

struct Walk<'a> {
    nodes: &'a mut usize,
}

impl Walk<'_> {
    fn schema(&mut self, schema: &Value, path: &str, depth: usize) -> Result<(), Unenforceable> {
        if depth > MAX_DEPTH {
            return Err(fail(path, format!("the schema nests deeper than {MAX_DEPTH} levels")));
        }
        let object = match schema {
            Value::Object(object) => object,
            // `true` accepts anything, which the grammar can say; `false` accepts nothing, which it cannot.
            Value::Bool(true) => return Ok(()),
            _ => return Err(fail(path, "a schema must be an object (or `true`)")),
        };
        self.count(path, 1)?;
        let unknown: Vec<&str> = object
            .keys()
            .map(String::as_str)
            .filter(|key| !ENFORCED.contains(key) && !ANNOTATIONS.contains(key))
            .collect();
        if !unknown.is_empty() {
            return Err(fail(
                path,
                format!(
                    "{} cannot be enforced by constrained decoding (supported: {})",
                    unknown.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
                    ENFORCED.join(", ")
                ),
            ));
        }
        if let Some(reference) = object.get("$ref") {
            let local = reference.as_str().is_some_and(|r| r == "#" || r.starts_with("#/"));
            if !local {
                return Err(fail(path, "`$ref` must point into this schema (`#/$defs/...`)"));
            }
        }
        self.bounds(object, path)?;
        self.children(object, path, depth)
    }

    fn count(&mut self, path: &str, more: usize) -> Result<(), Unenforceable> {
        *self.nodes += more;
        if *self.nodes > MAX_NODES {
            return Err(fail(path, format!("the schema has more than {MAX_NODES} subschemas, properties and values")));
        }
        Ok(())
    }

    fn bounds(&mut self, object: &Map<String, Value>, path: &str) -> Result<(), Unenforceable> {
        for key in ["minItems", "maxItems", "minLength", "maxLength"] {
            if let Some(value) = object.get(key) {
                match value.as_u64() {
                    Some(n) if n <= MAX_REPEAT => {}
                    Some(_) => return Err(fail(path, format!("`{key}` above {MAX_REPEAT} cannot be enforced"))),
                    None => return Err(fail(path, format!("`{key}` must be a non-negative integer"))),
                }
            }
        }
        let integer = object.get("type").and_then(Value::as_str) == Some("integer");
        for key in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"] {
            match object.get(key) {
                None => {}
                Some(value) if !value.is_number() => return Err(fail(path, format!("`{key}` must be a number"))),
                // The grammar spells out integer ranges digit by digit; it has no way to bound a decimal.
                Some(_) if !integer => {
                    return Err(fail(
                        path,
                        format!("`{key}` can be enforced on integers only (`\"type\": \"integer\"`)"),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(format) = object.get("format") {
            if !format.as_str().is_some_and(|f| FORMATS.contains(&f)) {
                return Err(fail(
                    path,
                    format!("`format` {format} cannot be enforced (supported: {})", FORMATS.join(", ")),
                ));
            }
        }
        if let Some(pattern) = object.get("pattern") {
            let Some(pattern) = pattern.as_str() else { return Err(fail(path, "`pattern` must be a string")) };
            check_pattern(pattern).map_err(|reason| fail(path, format!("`pattern` {pattern:?}: {reason}")))?;
        }
        for key in ["enum", "required"] {
            if let Some(values) = object.get(key) {
                let Some(values) = values.as_array() else {
                    return Err(fail(path, format!("`{key}` must be an array")));
                };
                self.count(path, values.len())?;
            }
        }
        Ok(())
    }

    fn children(&mut self, object: &Map<String, Value>, path: &str, depth: usize) -> Result<(), Unenforceable> {
        for key in ["properties", "$defs", "definitions"] {
            if let Some(children) = object.get(key) {
                let Some(children) = children.as_object() else {
                    return Err(fail(path, format!("`{key}` must be an object")));
                };
                self.count(path, children.len())?;
                for (name, child) in children {
                    self.schema(child, &format!("{path}/{key}/{}", escape(name)), depth + 1)?;
                }
            }
        }
        for key in ["anyOf", "oneOf", "allOf", "prefixItems"] {
            if let Some(children) = object.get(key) {
                let Some(children) = children.as_array().filter(|c| !c.is_empty()) else {
                    return Err(fail(path, format!("`{key}` must be a non-empty array")));
                };
                for (i, child) in children.iter().enumerate() {
                    self.schema(child, &format!("{path}/{key}/{i}"), depth + 1)?;
                }
            }
        }
        for key in ["items", "additionalProperties"] {
            match object.get(key) {
                None | Some(Value::Bool(_)) => {}
                Some(Value::Array(items)) if key == "items" => {
                    for (i, child) in items.iter().enumerate() {
                        self.schema(child, &format!("{path}/{key}/{i}"), depth + 1)?;
                    }
                }
                Some(child) => self.schema(child, &format!("{path}/{key}"), depth + 1)?,
            }
        }
        Ok(())
    }
}

/// A JSON pointer segment.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// The regular expressions the converter turns into grammar rules: anchored with `^` and `$`, literals,
/// classes, groups, alternation and quantifiers; not `\d`-style classes, lookaround or backreferences (the
/// converter would accept any string in their place).
fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!("longer than {MAX_PATTERN_BYTES} bytes"));
    }
    let Some(inner) = pattern.strip_prefix('^').and_then(|p| p.strip_suffix('$')) else {
        return Err("must be anchored with `^` and `$` to be enforced".into());
    };
    if inner.ends_with('\\') && !inner.ends_with("\\\\") {
        return Err("must be anchored with `^` and `$` to be enforced".into());
    }
    let chars: Vec<char> = inner.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += escape_len(&chars[i..], in_class)?,
            '[' if !in_class => {
                in_class = true;
                i += 1;
            }
            ']' if in_class => {
                in_class = false;
                i += 1;
            }
            '(' if !in_class && chars.get(i + 1) == Some(&'?') => {
                return Err("groups with `(?` (lookaround, named or non-capturing) cannot be enforced".into())
            }
            '^' | '$' if !in_class => return Err("an anchor inside the pattern cannot be enforced".into()),
            '{' if !in_class => {
                let end = chars[i..].iter().position(|&c| c == '}').ok_or("an unterminated `{`")?;
                let bounds: String = chars[i + 1..i + end].iter().collect();
                for part in bounds.split(',') {
                    let part = part.trim();
                    if part.is_empty() {
                        continue;
                    }
                    match part.parse::<u64>() {
                        Ok(n) if n <= MAX_REPEAT => {}
                        Ok(_) => return Err(format!("a repetition above {MAX_REPEAT} cannot be enforced")),
                        Err(_) => return Err(format!("`{{{bounds}}}` is not a repetition")),
                    }
                }
                i += end + 1;
            }
            _ => i += 1,
        }
    }
    if in_class {
        return Err("an unterminated `[`".into());
    }
    Ok(())
}

/// The length of the escape at the start of `chars`, if the converter can enforce it.
fn escape_len(chars: &[char], in_class: bool) -> Result<usize, String> {
    let Some(&next) = chars.get(1) else { return Err("a trailing backslash".into()) };
    let hex = |n: usize| chars.len() > 1 + n && chars[2..2 + n].iter().all(char::is_ascii_hexdigit);
    match next {
        't' | 'r' | 'n' | '\\' | '"' | '[' | ']' | '-' => Ok(2),
        'x' if hex(2) => Ok(4),
        'u' if hex(4) => Ok(6),
        'U' if hex(8) => Ok(10),
        '^' | '$' | '.' | '(' | ')' | '|' | '{' | '}' | '*' | '+' | '?' if !in_class => Ok(2),
        other => Err(format!(
            "`\\{other}` cannot be enforced by constrained decoding; spell it as a class (`\\d` as `[0-9]`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pydantic_schema_is_enforceable() {
        let schema = json!({
            "$defs": {"Pet": {"properties": {"kind": {"enum": ["cat", "dog"], "title": "Kind", "type": "string"}},
                              "required": ["kind"], "title": "Pet", "type": "object", "additionalProperties": false}},
            "properties": {"name": {"title": "Name", "type": "string", "pattern": "^[A-Z][a-z]{1,20}$"},
                           "age": {"type": "integer", "minimum": 0, "maximum": 150},
                           "pets": {"items": {"$ref": "#/$defs/Pet"}, "type": "array", "maxItems": 3},
                           "born": {"type": "string", "format": "date"},
                           "nick": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null}},
            "required": ["name", "age", "pets", "born", "nick"], "title": "Person", "type": "object",
            "additionalProperties": false
        });
        assert_eq!(check(&schema), Ok(()));
    }

    #[test]
    fn keywords_the_grammar_cannot_enforce_are_named() {
        let refused = |schema: Value| check(&schema).expect_err("refused").to_string();
        let error = refused(json!({"type": "object", "properties": {"a": {"not": {"type": "null"}, "if": {}}}}));
        assert!(error.contains("/properties/a") && error.contains("`not`, `if`"), "{error}");
        assert!(refused(json!({"type": "array", "uniqueItems": true})).contains("`uniqueItems`"));
        assert!(refused(json!({"type": "number", "minimum": 0.5})).contains("integers only"));
        assert!(refused(json!({"type": "string", "format": "email"})).contains("`format` \"email\""));
        assert!(refused(json!({"type": "string", "pattern": "[a-z]+"})).contains("anchored"));
        assert!(refused(json!({"type": "string", "pattern": "^\\d+$"})).contains("`\\d`"));
        assert!(refused(json!({"type": "string", "pattern": "^(?=a)a$"})).contains("`(?`"));
        assert!(refused(json!({"$ref": "https://example.com/s.json"})).contains("`$ref`"));
        assert!(refused(json!(false)).contains("must be an object"));
    }

    #[test]
    fn hostile_schemas_are_bounded() {
        let refused = |schema: Value| check(&schema).expect_err("refused").to_string();
        assert!(refused(json!({"type": "array", "minItems": 1_000_000})).contains("above 1000"));
        // Each repetition within the bound, their product not: llama.cpp's grammar parser refuses that one (its
        // own threshold), which the engine reports as a 400 too.
        assert_eq!(check(&json!({"type": "string", "pattern": "^(a{999}){999}$"})), Ok(()));
        assert!(refused(json!({"type": "string", "pattern": "^a{5000}$"})).contains("above 1000"));
        let mut deep = json!({"type": "string"});
        for _ in 0..100 {
            deep = json!({"type": "array", "items": deep});
        }
        assert!(refused(deep).contains("deeper than 32"));
        let wide: Map<String, Value> = (0..5100).map(|i| (format!("p{i}"), json!(true))).collect();
        assert!(refused(json!({"type": "object", "properties": wide})).contains("more than 5000"));
        let big = "x".repeat(MAX_SCHEMA_BYTES);
        assert!(refused(json!({"type": "string", "description": big})).contains("bytes"));
    }
}
