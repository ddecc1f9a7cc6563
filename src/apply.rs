//! Executes a plan against W&B: ordering, concurrency, admin-floor re-checks, journal.
