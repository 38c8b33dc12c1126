"""Thin servicers: proto -> domain call -> proto. No SQL and no business rules here."""
