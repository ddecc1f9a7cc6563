//! Directory sources: each builds a complete `DirectorySnapshot` or fails.
