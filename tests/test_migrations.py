"""Migrations: versioned, idempotent, and in agreement with the models."""

from __future__ import annotations

from pathlib import Path

from chatpro_privacy.storage import migrations
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import ALL_MODELS, COUNTER_MODELS, PolicyVersion
from helpers import Api


def test_migrations_are_recorded_and_idempotent(api: Api) -> None:
    assert migrations.applied_versions() == {m.version for m in migrations.MIGRATIONS}
    assert migrations.migrate() == []


def test_every_model_matches_its_table(api: Api) -> None:
    for model in (*ALL_MODELS, *COUNTER_MODELS):
        table = model._meta.table_name
        columns = {c.name for c in database.get_columns(table)}
        fields = {f.column_name for f in model._meta.sorted_fields}
        assert columns == fields, table


def test_seed_policy_is_the_published_document(api: Api) -> None:
    seed = (
        Path(__file__).parents[1]
        / "server/chatpro_privacy/storage/migrations/data/privacy-policy-2023-02-12.txt"
    )
    shared = Path(__file__).parents[2] / "shared/seed/privacy-policy.txt"
    if shared.exists():
        assert seed.read_bytes() == shared.read_bytes()
    (version,) = PolicyVersion.select()
    assert version.text == seed.read_text("utf-8")
