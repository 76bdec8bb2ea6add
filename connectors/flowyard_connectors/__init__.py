"""Flowyard's connectors; each module registers one connector by entry point."""
