//! SQLite store (to be written).
