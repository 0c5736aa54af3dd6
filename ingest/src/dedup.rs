//! De-duplication by event id (placeholder).
