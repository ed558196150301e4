//! A budget crossing 80% or 100% of its limit, as an alert.
use super::{Evidence, Raised, Severity};
use crate::budget::BudgetAlert;

impl From<&BudgetAlert> for Raised {
    fn from(alert: &BudgetAlert) -> Raised {
        let percent = (alert.threshold * 100.0).round();
        let title = format!("budget {} at {percent}%", alert.budget);
        Raised {
            key: format!("budget:{}:{}:{percent}", alert.budget, alert.window_start),
            rule: "budget".into(),
            severity: if alert.threshold >= 1.0 { Severity::Critical } else { Severity::Warning },
            message: format!(
                "{title}: {} used in the window that started at {}",
                alert.amounts(),
                crate::budget::rfc3339(alert.window_start)
            ),
            title,
            evidence: Evidence {
                statistic: "budget_used_fraction".into(),
                value: alert.used / alert.limit.max(f64::MIN_POSITIVE),
                threshold: alert.threshold,
                ..Evidence::default()
            },
            labels: [("budget".to_string(), alert.budget.clone())].into(),
        }
    }
}
