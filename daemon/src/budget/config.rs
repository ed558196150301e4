//! The `[[budgets]]` config form: TOML with unknown keys refused, validated into [`BudgetSpec`]s with errors that
//! name the budget and the bad value.
use super::model::{Action, BudgetError, BudgetSpec, Limit, Scope, Window};
use serde::{Deserialize, Serialize};

/// One `[[budgets]]` table of the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    pub name: String,
    #[serde(default)]
    pub scope: Scope,
    /// Required, except for `limit_concurrent` where it must be absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_requests: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_concurrent: Option<u64>,
    #[serde(default)]
    pub action: Action,
}

impl BudgetConfig {
    pub fn to_spec(&self) -> Result<BudgetSpec, BudgetError> {
        let invalid = |message: String| BudgetError::Invalid { name: self.name.clone(), message };
        if self.name.trim().is_empty() {
            return Err(invalid("the name must not be empty".into()));
        }
        let mut limits = Vec::new();
        if let Some(v) = self.limit_usd {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(format!("limit_usd = {v} must be a finite number >= 0")));
            }
            limits.push(("limit_usd", Limit::Usd(v)));
        }
        limits.extend(self.limit_tokens.map(|v| ("limit_tokens", Limit::Tokens(v))));
        limits.extend(self.limit_requests.map(|v| ("limit_requests", Limit::Requests(v))));
        limits.extend(self.limit_concurrent.map(|v| ("limit_concurrent", Limit::Concurrent(v))));
        let limit = match limits.as_slice() {
            [(_, limit)] => *limit,
            [] => return Err(invalid("set one of limit_usd, limit_tokens, limit_requests, limit_concurrent".into())),
            many => {
                let names: Vec<&str> = many.iter().map(|(n, _)| *n).collect();
                return Err(invalid(format!("set exactly one limit, found {}", names.join(", "))));
            }
        };
        let window = match (limit, self.window) {
            (Limit::Concurrent(_), None) => Window::Minute,
            (Limit::Concurrent(_), Some(w)) => {
                return Err(invalid(format!("window = {:?} does not apply to limit_concurrent", w.as_str())))
            }
            (_, Some(w)) => w,
            (_, None) => return Err(invalid("window is required: \"minute\", \"hour\", \"day\" or \"month\"".into())),
        };
        Ok(BudgetSpec { name: self.name.clone(), scope: self.scope.clone(), window, limit, action: self.action })
    }
}

/// Validates every budget and refuses duplicate names (counters are stored by name).
pub fn specs_from_config(budgets: &[BudgetConfig]) -> Result<Vec<BudgetSpec>, BudgetError> {
    let mut specs: Vec<BudgetSpec> = Vec::with_capacity(budgets.len());
    for b in budgets {
        let spec = b.to_spec()?;
        if specs.iter().any(|s| s.name == spec.name) {
            return Err(BudgetError::Invalid { name: spec.name, message: "the name is used twice".into() });
        }
        specs.push(spec);
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        budgets: Vec<BudgetConfig>,
    }

    fn parse(toml_text: &str) -> Result<Vec<BudgetSpec>, String> {
        let file: File = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        specs_from_config(&file.budgets).map_err(|e| e.to_string())
    }

    #[test]
    fn config_form() {
        let specs = parse(
            "[[budgets]]\nname = \"acme\"\nscope = \"tenant:acme\"\nwindow = \"day\"\nlimit_usd = 5.0\n\
             [[budgets]]\nname = \"slots\"\nlimit_concurrent = 4\naction = \"downgrade\"\n",
        )
        .expect("valid budgets");
        assert_eq!(specs[0].scope, Scope::Tenant("acme".into()));
        assert_eq!((specs[0].window, specs[0].limit, specs[0].action), (Window::Day, Limit::Usd(5.0), Action::Reject));
        assert_eq!((specs[1].scope.clone(), specs[1].limit), (Scope::Global, Limit::Concurrent(4)));

        let err = |t: &str| parse(t).expect_err("must be refused");
        assert!(err("[[budgets]]\nname = \"a\"\nwindow = \"day\"\nlimit_usd = 1.0\nlimit_tokens = 5\n")
            .contains("found limit_usd, limit_tokens"));
        assert!(err("[[budgets]]\nname = \"a\"\nwindow = \"day\"\n").contains("set one of"));
        assert!(err("[[budgets]]\nname = \"a\"\nscope = \"team:x\"\nwindow = \"day\"\nlimit_requests = 1\n")
            .contains("\"team:x\""));
        assert!(err("[[budgets]]\nname = \"a\"\nwindow = \"week\"\nlimit_requests = 1\n").contains("week"));
        assert!(err("[[budgets]]\nname = \"a\"\nwindow = \"day\"\nlimit_usd = -1.0\n").contains("limit_usd = -1"));
        assert!(err("[[budgets]]\nname = \"a\"\nlimit_tokens = 1\n").contains("window is required"));
        assert!(
            err("[[budgets]]\nname = \"a\"\nwindow = \"day\"\nlimit_tokens = 1\nrolling = true\n").contains("rolling")
        );
        assert!(err("[[budgets]]\nname = \"a\"\nwindow = \"day\"\nlimit_tokens = 1\n[[budgets]]\nname = \"a\"\n\
                     window = \"day\"\nlimit_tokens = 2\n")
        .contains("used twice"));
    }
}
