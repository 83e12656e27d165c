//! control (being written)
