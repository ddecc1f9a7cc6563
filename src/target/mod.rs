//! The W&B SCIM client: reads the org snapshot and executes plan actions.
