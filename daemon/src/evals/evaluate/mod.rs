//! Scoring a run's answers: the evaluators a client configures ([`spec`]), the deterministic ones
//! ([`check`]), the LLM judges' requests and answers ([`judge`]), and the run's summaries, paired comparison
//! with a baseline and verdict ([`stats`]). Nothing here does I/O: the runner sends the judges' requests.
pub mod check;
pub mod judge;
pub mod spec;
pub mod stats;

pub use check::{check, Candidate, Outcome};
pub use judge::{
    combine, pairwise_body, parse_preference, parse_verdict, question_text, single_body, verdict_outcome, JudgeInput,
    PairOutcome, Preference, Verdict as JudgeVerdict, JUDGE_MAX_TOKENS,
};
pub use spec::{parse, Evaluator, EvaluatorKind, SpecError};
pub use stats::{compare_paired, compare_pairwise, summarize, verdict, Comparison, EvaluatorSummary, Verdict};
