"""Organisations: statements, memberships, plugin settings, retention periods (ORG-, PLG-)."""
