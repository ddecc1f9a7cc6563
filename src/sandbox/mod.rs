//! The W&B sandbox: a faithful emulator of W&B's SCIM API for demos and tests.
