//! The daemon: schedule, metrics, health (issue 5).
