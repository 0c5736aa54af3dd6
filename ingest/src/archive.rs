//! Parquet archive (placeholder).
