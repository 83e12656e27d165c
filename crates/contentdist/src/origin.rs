//! origin (being written)
