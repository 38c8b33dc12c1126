"""Encryption at rest for content: envelope keys and keyed word tokens."""
