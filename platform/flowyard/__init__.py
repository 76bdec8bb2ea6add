"""Flowyard: integration flows for manufacturing IT, declared in YAML."""

__version__ = "0.1.0"
