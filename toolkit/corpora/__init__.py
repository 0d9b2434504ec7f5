"""Corpus readers: one module per corpus, each reading the files as they lie on disk into typed records."""
