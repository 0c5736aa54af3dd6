//! Change rules (placeholder).
