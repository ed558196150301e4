//! `llmopsctl budgets`: each budget's usage against its limit, what remains, how fast it burns and when it runs
//! out, and the one-line-per-change updates of `llmopsctl budgets --watch`.
use std::fmt::Display;

use chrono::{DateTime, TimeZone};
use llmops_proto::v1::{Budget, BudgetUpdate, ListBudgetsResponse};

use crate::table::{join_cells, Column, Table};
use crate::text::{dash_if_empty, UNSET};
use crate::when::short_time;

/// What `budgets` prints when the daemon has none.
pub const NO_BUDGETS: &str = "(no budgets configured: add [[budgets]] to the config)";

const COLUMNS: [Column; 10] = [
    Column::left("NAME"),
    Column::left("SCOPE"),
    Column::left("WINDOW"),
    Column::left("ACTION"),
    Column::right("USED / LIMIT"),
    Column::right("USED %"),
    Column::right("REMAINING"),
    Column::right("BURN/h"),
    Column::left("EXHAUSTS"),
    Column::left("RESETS"),
];

/// The `budgets --watch` columns; rows arrive one at a time, so each has a fixed width.
const WATCH_COLUMNS: [Column; 5] = [
    Column::left("TIME").streamed(8),
    Column::left("NAME").streamed(16),
    Column::right("USED / LIMIT").streamed(26),
    Column::right("USED %").streamed(7),
    Column::right("BURN/h").streamed(9),
];

pub fn render_budgets<Tz: TimeZone>(response: &ListBudgetsResponse, now: &DateTime<Tz>) -> String
where
    Tz::Offset: Display,
{
    if response.budgets.is_empty() {
        return format!("{NO_BUDGETS}\n");
    }
    let mut table = Table::new(&COLUMNS);
    for budget in &response.budgets {
        let concurrent = is_concurrent(budget);
        // Concurrency is a cap on requests running now: no window, no rate, no exhaustion.
        let exhausts = match budget.projected_exhaustion_unix_ms {
            Some(at) if !concurrent && at <= response.at_unix_ms.max(1) => "now".to_owned(),
            Some(at) if !concurrent => short_time(at, now),
            _ => UNSET.to_owned(),
        };
        table.push(vec![
            dash_if_empty(&budget.name),
            dash_if_empty(&budget.scope),
            if concurrent { UNSET.to_owned() } else { dash_if_empty(&budget.window) },
            dash_if_empty(&budget.action),
            used_of_limit(budget),
            used_percent(budget),
            amount(&budget.limit_kind, budget.remaining),
            burn_per_hour(budget),
            exhausts,
            if concurrent { UNSET.to_owned() } else { short_time(budget.resets_at_unix_ms, now) },
        ]);
    }
    table.render()
}

/// Header for `budgets --watch`.
pub fn budget_watch_header() -> String {
    let titles: Vec<String> = WATCH_COLUMNS.iter().map(|c| c.title.to_owned()).collect();
    join_watch_cells(&titles)
}

/// The `budgets --watch` lines for one update: one per budget whose usage changed.
pub fn budget_watch_lines<Tz: TimeZone>(update: &BudgetUpdate, now: &DateTime<Tz>) -> Vec<String>
where
    Tz::Offset: Display,
{
    let time = short_time(update.at_unix_ms, now);
    update
        .budgets
        .iter()
        .map(|budget| {
            join_watch_cells(&[
                time.clone(),
                dash_if_empty(&budget.name),
                used_of_limit(budget),
                used_percent(budget),
                burn_per_hour(budget),
            ])
        })
        .collect()
}

fn join_watch_cells(cells: &[String]) -> String {
    let widths: Vec<usize> = WATCH_COLUMNS.iter().map(|c| c.stream_width).collect();
    join_cells(&WATCH_COLUMNS, &widths, cells)
}

fn is_concurrent(budget: &Budget) -> bool {
    budget.limit_kind == "concurrent"
}

/// "$1.23 / $5.00", "12.3k / 100k tokens", "812 / 1k requests", "3 / 8 concurrent".
fn used_of_limit(budget: &Budget) -> String {
    let kind = budget.limit_kind.as_str();
    let unit = match kind {
        "usd" | "" => String::new(),
        other => format!(" {other}"),
    };
    format!("{} / {}{unit}", amount(kind, budget.used), amount(kind, budget.limit))
}

/// Share of the limit used; over 100% for `alert` budgets that ran past it, "-" for a zero limit.
fn used_percent(budget: &Budget) -> String {
    if budget.limit > 0.0 {
        format!("{:.1}%", budget.used * 100.0 / budget.limit)
    } else {
        UNSET.to_owned()
    }
}

fn burn_per_hour(budget: &Budget) -> String {
    if is_concurrent(budget) {
        UNSET.to_owned()
    } else {
        amount(&budget.limit_kind, budget.burn_rate_per_hour)
    }
}

/// A value in its limit's unit: dollars with cents, counts shortened ("12.3k"), concurrency as is.
pub fn amount(limit_kind: &str, value: f64) -> String {
    match limit_kind {
        "usd" => dollars(value),
        "concurrent" => format!("{value:.0}"),
        _ => count(value),
    }
}

/// "$5.00"; amounts under a cent keep four decimals so a little spend does not read as none.
pub fn dollars(value: f64) -> String {
    if value < 0.0 {
        return format!("-{}", dollars(-value));
    }
    if value > 0.0 && value < 0.01 {
        format!("${value:.4}")
    } else {
        format!("${value:.2}")
    }
}

/// "950", "12.3k", "100k", "1.5M", "2B": three significant digits at most, trailing ".0" dropped.
pub fn count(value: f64) -> String {
    if value < 0.0 {
        return format!("-{}", count(-value));
    }
    const UNITS: [(f64, &str); 5] = [(1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "B"), (1e12, "T")];
    let mut text = String::new();
    for (divisor, suffix) in UNITS {
        let scaled = value / divisor;
        let rounded = if scaled < 100.0 { (scaled * 10.0).round() / 10.0 } else { scaled.round() };
        text = format!("{rounded}{suffix}");
        // 999.96 rounds to 1000: that is "1k", not "1000".
        if rounded < 1000.0 {
            break;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    const AT: i64 = 1_717_000_000_000; // 2024-05-29 16:26:40 UTC

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 29, 16, 26, 40).single().expect("valid date")
    }

    fn usd_budget() -> Budget {
        Budget {
            name: "daily-spend".into(),
            scope: "tenant:acme".into(),
            window: "day".into(),
            limit_kind: "usd".into(),
            limit: 5.0,
            action: "reject".into(),
            used: 1.234,
            reserved: 0.1,
            remaining: 3.766,
            in_flight: 1,
            window_start_unix_ms: 1_716_940_800_000,
            resets_at_unix_ms: 1_717_027_200_000,
            burn_rate_per_hour: 0.0755,
            projected_exhaustion_unix_ms: Some(AT + 3 * 3_600_000),
            used_usd: 1.234,
            used_tokens: 40_000,
            requests: 17,
        }
    }

    fn token_budget() -> Budget {
        Budget {
            name: "hourly-tokens".into(),
            scope: "global".into(),
            window: "hour".into(),
            limit_kind: "tokens".into(),
            limit: 100_000.0,
            action: "downgrade".into(),
            used: 12_345.0,
            remaining: 87_655.0,
            resets_at_unix_ms: AT + 1_999_000,
            burn_rate_per_hour: 26_453.6,
            projected_exhaustion_unix_ms: None,
            ..Budget::default()
        }
    }

    fn concurrent_budget() -> Budget {
        Budget {
            name: "gpu-slots".into(),
            scope: "route:big".into(),
            window: "minute".into(),
            limit_kind: "concurrent".into(),
            limit: 8.0,
            action: "reject".into(),
            used: 3.0,
            remaining: 5.0,
            in_flight: 3,
            resets_at_unix_ms: AT + 20_000,
            ..Budget::default()
        }
    }

    #[test]
    fn budgets_table_formats_each_limit_kind() {
        let requests = Budget {
            name: "monthly-requests".into(),
            scope: "model:qwen".into(),
            window: "month".into(),
            limit_kind: "requests".into(),
            limit: 1000.0,
            action: "alert".into(),
            used: 1200.0,
            remaining: 0.0,
            resets_at_unix_ms: 1_719_792_000_000,
            burn_rate_per_hour: 1.7,
            projected_exhaustion_unix_ms: Some(AT),
            ..Budget::default()
        };
        let response = ListBudgetsResponse {
            at_unix_ms: AT,
            budgets: vec![usd_budget(), token_budget(), requests, concurrent_budget()],
        };
        let text = render_budgets(&response, &now());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME              SCOPE        WINDOW  ACTION            USED / LIMIT  USED %  REMAINING  BURN/h  \
                 EXHAUSTS  RESETS",
                "daily-spend       tenant:acme  day     reject           $1.23 / $5.00   24.7%      $3.77   $0.08  \
                 19:26:40  2024-05-30 00:00:00",
                "hourly-tokens     global       hour    downgrade  12.3k / 100k tokens   12.3%      87.7k   26.5k  \
                 -         16:59:59",
                "monthly-requests  model:qwen   month   alert       1.2k / 1k requests  120.0%          0     1.7  \
                 now       2024-07-01 00:00:00",
                "gpu-slots         route:big    -       reject        3 / 8 concurrent   37.5%          5       -  \
                 -         -",
            ]
        );
    }

    #[test]
    fn no_budgets_says_how_to_add_one() {
        let text = render_budgets(&ListBudgetsResponse { at_unix_ms: AT, budgets: Vec::new() }, &now());
        assert_eq!(text, "(no budgets configured: add [[budgets]] to the config)\n");
    }

    #[test]
    fn unset_fields_are_dashes() {
        let bare = ListBudgetsResponse { at_unix_ms: AT, budgets: vec![Budget::default()] };
        let text = render_budgets(&bare, &now());
        assert_eq!(
            text.lines().nth(1),
            Some("-     -      -       -              0 / 0       -          0       0  -         -")
        );
    }

    #[test]
    fn counts_are_short_and_dollars_keep_small_spend() {
        let cases = [
            (0.0, "0"),
            (7.0, "7"),
            (12.34, "12.3"),
            (950.0, "950"),
            (999.96, "1k"),
            (1000.0, "1k"),
            (12_345.0, "12.3k"),
            (100_000.0, "100k"),
            (999_999.0, "1M"),
            (1_500_000.0, "1.5M"),
            (2e9, "2B"),
            (-1500.0, "-1.5k"),
        ];
        for (value, text) in cases {
            assert_eq!(count(value), text, "{value}");
        }
        assert_eq!(dollars(5.0), "$5.00");
        assert_eq!(dollars(1.235), "$1.24");
        assert_eq!(dollars(0.0), "$0.00");
        assert_eq!(dollars(0.00345), "$0.0034");
        assert_eq!(dollars(-0.5), "-$0.50");
        assert_eq!(amount("concurrent", 3.0), "3");
    }

    #[test]
    fn watch_lines_line_up_with_their_header() {
        let update = BudgetUpdate { at_unix_ms: AT, budgets: vec![usd_budget(), token_budget()], missed: 0 };
        assert_eq!(budget_watch_header(), "TIME      NAME                            USED / LIMIT   USED %     BURN/h");
        assert_eq!(
            budget_watch_lines(&update, &now()),
            [
                "16:26:40  daily-spend                    $1.23 / $5.00    24.7%      $0.08",
                "16:26:40  hourly-tokens            12.3k / 100k tokens    12.3%      26.5k",
            ]
        );
        let empty = BudgetUpdate { at_unix_ms: AT, budgets: Vec::new(), missed: 2 };
        assert!(budget_watch_lines(&empty, &now()).is_empty());
    }
}
