"""Breaches and reading the audit trail (SEC-4, SEC-5)."""
