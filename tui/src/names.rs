//! Short lowercase names for the API's enums, shared by JSON, tables and reports so they always agree.
//! Unknown numbers (a newer daemon) read as "unspecified" rather than failing.
use llmops_proto::v1::trace_event::Kind;
use llmops_proto::v1::{EngineHealth, TraceStatus};

pub fn trace_status_name(status: i32) -> &'static str {
    match TraceStatus::try_from(status) {
        Ok(TraceStatus::Ok) => "ok",
        Ok(TraceStatus::Rejected) => "rejected",
        Ok(TraceStatus::Error) => "error",
        Ok(TraceStatus::Cancelled) => "cancelled",
        Ok(TraceStatus::InFlight) => "in_flight",
        Ok(TraceStatus::Unspecified) | Err(_) => "unspecified",
    }
}

pub fn engine_health_name(health: i32) -> &'static str {
    match EngineHealth::try_from(health) {
        Ok(EngineHealth::Unknown) => "unknown",
        Ok(EngineHealth::Healthy) => "healthy",
        Ok(EngineHealth::Unhealthy) => "unhealthy",
        Ok(EngineHealth::Unspecified) | Err(_) => "unspecified",
    }
}

pub fn event_kind_name(kind: i32) -> &'static str {
    match Kind::try_from(kind) {
        Ok(Kind::Started) => "started",
        Ok(Kind::Finished) => "finished",
        Ok(Kind::Unspecified) | Err(_) => "unspecified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_status_names() {
        let names: Vec<_> = (0..=5).map(trace_status_name).collect();
        assert_eq!(names, ["unspecified", "ok", "rejected", "error", "cancelled", "in_flight"]);
        assert_eq!(trace_status_name(42), "unspecified");
    }

    #[test]
    fn engine_health_names() {
        assert_eq!(engine_health_name(EngineHealth::Unknown as i32), "unknown");
        assert_eq!(engine_health_name(EngineHealth::Healthy as i32), "healthy");
        assert_eq!(engine_health_name(EngineHealth::Unhealthy as i32), "unhealthy");
        assert_eq!(engine_health_name(0), "unspecified");
        assert_eq!(engine_health_name(-1), "unspecified");
    }

    #[test]
    fn event_kind_names() {
        assert_eq!(event_kind_name(Kind::Started as i32), "started");
        assert_eq!(event_kind_name(Kind::Finished as i32), "finished");
        assert_eq!(event_kind_name(7), "unspecified");
    }
}
