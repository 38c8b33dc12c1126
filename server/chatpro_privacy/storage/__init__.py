"""Persistence only: the database handle and its dialects, peewee models and migrations,
hand-written hot-path SQL, the key store and erasure ledger (a database of their own), and
the blob store. Nothing here knows the domain's rules."""
