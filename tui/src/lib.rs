//! The llmops gRPC clients: `llmopsctl` (scripted queries and admin) and `llmops-top` (the console, in `top`).
//! Both share finding and reaching the daemon with the caller's token, and turning its messages into JSON,
//! tables and readable reports.

pub mod address;
pub mod alert_enums;
pub mod auth;
pub mod connect;
pub mod json;
pub mod names;
pub mod query;
pub mod report;
pub mod safe_output;
pub mod scores;
pub mod table;
pub mod text;
pub mod tls;
pub mod top;
pub mod when;
