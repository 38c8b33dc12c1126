"""Two sweeping processes on one database (RET-1): each organisation's content is taken by
one of them at a time, so every expired item is deleted exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from typing import Any
from urllib.parse import quote

from chatpro_privacy.storage.models import ContentItem, DeletionFeed
from helpers import Api, backdate_content
from orgs import build_org, conversation, send


def test_two_concurrent_sweeps_delete_each_item_once(
    api: Api, server: Any, database_target: tuple[str, str | None]
) -> None:
    url, schema = database_target
    operator = api.staff("operator", "sweepop")
    expected = 0
    for prefix in ("a", "b", "c"):
        org = build_org(api, prefix, members=("one", "two"), operator=operator)
        one, two = org.members["one"], org.members["two"]
        group = conversation(api, one, org.organisation_id, [two])
        for i in range(12):
            send(api, one if i % 2 else two, group, f"{prefix} message {i}")
            expected += 1
    backdate_content()
    served_url = url if schema is None else f"{url}?options={quote(f'-c search_path={schema}')}"
    env = {
        **os.environ,
        "DATABASE_URL": served_url,
        "CHATPRO_SECRET_KEY": server.settings.secret_key.hex(),
        "CHATPRO_RECEIPT_SIGNING_KEY": server.settings.receipt_signing_key.hex(),
        "CHATPRO_MASTER_KEY": server.settings.master_key.hex(),
        "CHATPRO_KEY_STORE_URL": server.settings.key_store_url,
        "CHATPRO_BLOB_DIR": server.settings.blob_dir,
        "CHATPRO_AUDIT_CHECKPOINT_FILE": server.settings.audit_checkpoint_file,
        "CHATPRO_LOG_FORMAT": "json",
    }
    command = [sys.executable, "-m", "chatpro_privacy", "sweep"]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
        reports.append(json.loads(out)["content"])
    assert sum(r["deleted"] for r in reports) == expected
    assert ContentItem.select().count() == 0
    dropped = Counter(
        content_id
        for entry in DeletionFeed.select().where(DeletionFeed.reason == "expired")
        for content_id in entry.content_ids
    )
    assert len(dropped) == expected and set(dropped.values()) == {1}
