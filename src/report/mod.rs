//! Report rendering: text, markdown and JSON from a `Plan`. Pure.
