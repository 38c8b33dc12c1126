"""Key store, content sealing, word tokens and the blob store, without a server."""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from chatpro_privacy.domain.vault.crypto import (
    ContentUnreadable,
    content_aad,
    seal,
    unseal,
    word_token,
    word_tokens,
    words,
)
from chatpro_privacy.storage.blobs import BlobMissing, BlobStore
from chatpro_privacy.storage.keystore import DataKey, KeyStore, KeyStoreCorrupt

MASTER = bytes(range(32))


@pytest.fixture
def keys_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/keys/keys.sqlite3"


@pytest.fixture
def store(keys_url: str) -> Iterator[KeyStore]:
    ks = KeyStore(keys_url, MASTER)
    yield ks
    ks.close()


def test_seal_round_trip_and_wrong_place_fails(store: KeyStore) -> None:
    key = store.data_key("org-a", "alice")
    aad = content_aad("org-a", "msg-1")
    sealed = seal(key, aad, b"hello there")
    assert b"hello there" not in sealed
    assert unseal(key, aad, sealed) == b"hello there"
    with pytest.raises(ContentUnreadable):
        unseal(key, content_aad("org-a", "msg-2"), sealed)
    with pytest.raises(ContentUnreadable):
        unseal(key, content_aad("org-b", "msg-1"), sealed)
    with pytest.raises(ContentUnreadable):
        unseal(key, content_aad("org-a", "msg-1", "chunk:0"), sealed)
    with pytest.raises(ContentUnreadable):
        unseal(store.data_key("org-a", "bob"), aad, sealed)
    with pytest.raises(ContentUnreadable):
        unseal(key, aad, sealed[:20])
    assert content_aad("o", "r", "chunk:1") != content_aad("o", "r", "chunk:2")


def test_data_key_repr_hides_key(store: KeyStore) -> None:
    key = store.data_key("org-a", "alice")
    assert key.key.hex() not in repr(key)
    assert repr(key.key) not in repr(key)


def test_master_key_must_be_32_bytes(keys_url: str) -> None:
    with pytest.raises(ValueError):
        KeyStore(keys_url, b"short")


def test_data_keys_per_org_and_subject_and_stable_across_reopen(keys_url: str) -> None:
    first = KeyStore(keys_url, MASTER)
    alice = first.data_key("org-a", "alice")
    assert first.data_key("org-a", "alice") == alice
    bob = first.data_key("org-a", "bob")
    alice_b = first.data_key("org-b", "alice")
    assert len({alice.key, bob.key, alice_b.key}) == 3
    assert len({alice.key_id, bob.key_id, alice_b.key_id}) == 3
    assert len(alice.key) == 32
    first.close()

    again = KeyStore(keys_url, MASTER)
    assert again.data_key("org-a", "alice") == alice
    assert again.data_keys([alice.key_id, bob.key_id, "nope"]) == {
        alice.key_id: alice,
        bob.key_id: bob,
    }
    assert again.organisation_data_keys("org-a") == [alice, bob]
    again.close()

    wrong_master = KeyStore(keys_url, bytes(32))
    with pytest.raises(KeyStoreCorrupt):
        wrong_master.data_key("org-a", "alice")
    wrong_master.close()


def test_data_keys_chunks_long_id_lists(store: KeyStore) -> None:
    made = [store.data_key("org-a", f"member-{i}") for i in range(620)]
    found = store.data_keys([k.key_id for k in made] + ["missing"])
    assert found == {k.key_id: k for k in made}
    assert store.data_keys([]) == {}


def test_destroy_member_key(keys_url: str, store: KeyStore) -> None:
    alice = store.data_key("org-a", "alice")
    bob = store.data_key("org-a", "bob")
    sealed = seal(alice, b"aad", b"secret")
    # Another process holds alice's key in its cache; destruction here must reach it.
    other = KeyStore(keys_url, MASTER)
    assert other.data_keys([alice.key_id]) == {alice.key_id: alice}

    assert store.destroy_member_key("org-a", "alice") is True
    assert store.destroy_member_key("org-a", "alice") is False
    assert store.data_keys([alice.key_id, bob.key_id]) == {bob.key_id: bob}
    assert other.data_keys([alice.key_id]) == {}
    assert other.organisation_data_keys("org-a") == [bob]

    new_alice = store.data_key("org-a", "alice")
    assert new_alice.key_id != alice.key_id
    assert new_alice.key != alice.key
    with pytest.raises(ContentUnreadable):
        unseal(new_alice, b"aad", sealed)
    other.close()


def test_destroy_organisation_key(store: KeyStore) -> None:
    a1 = store.data_key("org-a", "alice")
    a2 = store.data_key("org-a", "bob")
    b1 = store.data_key("org-b", "alice")
    assert store.destroy_organisation_key("org-a") == 2
    assert store.destroy_organisation_key("org-a") == 0
    assert store.data_keys([a1.key_id, a2.key_id, b1.key_id]) == {b1.key_id: b1}
    assert store.organisation_data_keys("org-a") == []
    assert store.organisation_data_keys("org-b") == [b1]
    fresh = store.data_key("org-a", "alice")
    assert fresh.key != a1.key
    assert fresh.key_id != a1.key_id


def _swap_wrapped(path: str, sql_from: str, sql_to: str) -> None:
    con = sqlite3.connect(path)
    with con:
        con.execute(f"UPDATE data_key SET wrapped = ({sql_from}) WHERE {sql_to}")
    con.close()


def test_wrapped_key_copied_to_another_row_does_not_unwrap(tmp_path: Path) -> None:
    """The store raises KeyStoreCorrupt rather than hand out the key of another row."""
    path = f"{tmp_path}/keys.sqlite3"
    ks = KeyStore(f"sqlite:///{path}", MASTER)
    alice = ks.data_key("org-a", "alice")
    bob = ks.data_key("org-a", "bob")
    ks.close()
    _swap_wrapped(
        path,
        "SELECT wrapped FROM data_key WHERE subject_ref = 'alice'",
        "subject_ref = 'bob'",
    )
    ks = KeyStore(f"sqlite:///{path}", MASTER)
    assert ks.data_key("org-a", "alice") == alice
    with pytest.raises(KeyStoreCorrupt):
        ks.data_key("org-a", "bob")
    with pytest.raises(KeyStoreCorrupt):
        ks.data_keys([bob.key_id])
    ks.close()

    # An organisation key copied to another organisation does not unwrap either.
    ks = KeyStore(f"sqlite:///{path}", MASTER)
    carol = ks.data_key("org-b", "carol")
    ks.close()
    con = sqlite3.connect(path)
    with con:
        con.execute(
            "UPDATE organisation_key SET wrapped = (SELECT wrapped FROM organisation_key"
            " WHERE organisation_id = 'org-a') WHERE organisation_id = 'org-b'"
        )
    con.close()
    ks = KeyStore(f"sqlite:///{path}", MASTER)
    with pytest.raises(KeyStoreCorrupt):
        ks.data_keys([carol.key_id])
    ks.close()


def test_key_store_file_holds_no_raw_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    ks = KeyStore(f"sqlite:///{path}", MASTER)
    made = [ks.data_key(f"org-{i % 3}", f"member-{i}") for i in range(30)]
    ks.destroy_member_key("org-0", "member-0")
    ks.close()
    stored = b"".join(
        p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("keys.sqlite3")
    )
    assert stored
    assert MASTER not in stored
    for key in made:
        assert key.key not in stored
        assert key.key[:16] not in stored and key.key[16:] not in stored


def test_word_tokens_are_per_author(store: KeyStore) -> None:
    alice = store.data_key("org-a", "alice")
    bob = store.data_key("org-a", "bob")
    assert word_token(alice, "Hello") == word_token(alice, "hello")
    assert len(word_token(alice, "hello")) == 16
    assert word_token(alice, "hello") != word_token(bob, "hello")
    assert word_token(alice, "hello") != word_token(alice, "world")
    assert word_tokens(alice, "Hello, world! hello") == [
        word_token(alice, "hello"),
        word_token(alice, "world"),
    ]
    assert set(word_tokens(alice, "hello world")).isdisjoint(word_tokens(bob, "hello world"))
    # A DataKey forged with alice's id but other key bytes gets other tokens.
    forged = DataKey(alice.key_id, alice.organisation_id, alice.subject_ref, bytes(32))
    assert word_token(forged, "hello") != word_token(alice, "hello")


def test_words_normalisation() -> None:
    assert words("Hello, WORLD! hello... world?") == ["hello", "world"]
    assert words("a I to be") == ["to", "be"]
    assert words("snake_case e-mail x.y") == ["snake", "case", "mail"]
    assert words("Straße STRASSE") == ["strasse"]
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "FULLwidth") + " \uff11\uff12\uff13"
    assert words(fullwidth) == ["fullwidth", "123"]
    assert words("cafe\u0301 CAFÉ") == ["café"]
    assert words("ﬁle") == ["file"]
    assert words("café Café") == ["café"]
    assert words("") == []
    assert len(words(" ".join(f"w{i}" for i in range(2000)))) == 512


def test_blob_store(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    blobs.put("org-a/rec-1/000000", b"one")
    blobs.put("org-a/rec-1/000001", b"two")
    blobs.put("org-a/rec-10/000000", b"other recording")
    blobs.put("org-b/rec-1/000000", b"other org")
    assert blobs.get("org-a/rec-1/000001") == b"two"
    blobs.put("org-a/rec-1/000001", b"two again")
    assert blobs.get("org-a/rec-1/000001") == b"two again"
    assert blobs.exists("org-a/rec-1/000000")
    assert not blobs.exists("org-a/rec-1/000009")
    with pytest.raises(BlobMissing):
        blobs.get("org-a/rec-1/000009")
    assert len(list(blobs.iter_files())) == 4

    assert blobs.delete_prefix("org-a/rec-1") == 2
    assert not blobs.exists("org-a/rec-1/000000")
    assert blobs.get("org-a/rec-10/000000") == b"other recording"
    assert blobs.delete_prefix("org-a/rec-1/") == 0
    assert blobs.delete_prefix("org-b/rec-1/000000") == 1
    assert sorted(p.name for p in blobs.iter_files()) == ["000000"]
    assert not any(name.startswith(".tmp") for name in os.listdir(tmp_path / "blobs" / "org-a"))


@pytest.mark.parametrize(
    "name",
    ["", "../x", "a/../b", "/etc/passwd", "a//b", "a/./b", "a b", "a\\b", "a/b\x00", "ö", "a/"],
)
def test_blob_store_refuses_bad_names(tmp_path: Path, name: str) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    with pytest.raises(ValueError):
        blobs.put(name, b"x")
    with pytest.raises(ValueError):
        blobs.get(name)


def test_key_store_on_postgresql() -> None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgresql"):
        pytest.skip("DATABASE_URL names no PostgreSQL database")
    import psycopg2

    schema = f"ks_{secrets.token_hex(6)}"
    admin = psycopg2.connect(url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    try:
        ks = KeyStore(url, MASTER, schema=schema)
        alice = ks.data_key("org-a", "alice")
        bob = ks.data_key("org-a", "bob")
        carol = ks.data_key("org-b", "carol")
        assert ks.data_key("org-a", "alice") == alice
        assert ks.data_keys([alice.key_id, bob.key_id, "x"]) == {
            alice.key_id: alice,
            bob.key_id: bob,
        }
        assert unseal(alice, b"a", seal(alice, b"a", b"text")) == b"text"
        ks.close()

        ks = KeyStore(url, MASTER, schema=schema)
        assert ks.data_key("org-a", "alice") == alice
        assert ks.organisation_data_keys("org-a") == [alice, bob]
        assert ks.destroy_member_key("org-a", "alice") is True
        assert ks.data_keys([alice.key_id]) == {}
        assert ks.data_key("org-a", "alice").key != alice.key
        assert ks.destroy_organisation_key("org-a") == 2
        assert ks.organisation_data_keys("org-a") == []
        assert ks.data_keys([carol.key_id]) == {carol.key_id: carol}
        ks.close()
        with admin.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {schema}.data_key")
            row = cur.fetchone()
            assert row is not None and row[0] == 1
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def test_racing_writers_end_up_with_one_key(keys_url: str) -> None:
    """Threads sharing a store and a second store on the same file agree on every key."""
    from concurrent.futures import ThreadPoolExecutor

    first, second = KeyStore(keys_url, MASTER), KeyStore(keys_url, MASTER)
    jobs = [(store, f"org-{i % 2}", f"m-{i % 5}") for i in range(80) for store in (first, second)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda job: job[0].data_key(job[1], job[2]), jobs))
    by_author: dict[tuple[str, str], set[DataKey]] = {}
    for key in got:
        by_author.setdefault((key.organisation_id, key.subject_ref), set()).add(key)
    assert len(by_author) == 10
    assert all(len(keys) == 1 for keys in by_author.values())
    first.close()
    second.close()
