"""Persistence only: the database handle, peewee models and versioned migrations."""
