//! Wall-clock time as the traces record it.

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
