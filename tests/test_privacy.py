"""Keyed user pseudonyms: determinism, key handling, and that the key never leaks."""

from __future__ import annotations

import hashlib
import hmac
import pickle

import pytest

from tfrs_mm import privacy

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def test_pseudonym_is_truncated_hmac_sha256_with_prefix():
    expected = "p_" + hmac.new(KEY, b"alice", hashlib.sha256).hexdigest()[:16]
    assert privacy.Pseudonymizer(key=KEY)("alice") == expected


def test_same_key_same_pseudonym_across_instances_other_key_differs():
    first, again = privacy.Pseudonymizer(key=KEY), privacy.Pseudonymizer(key=KEY)
    other = privacy.Pseudonymizer(key=OTHER_KEY)
    users = [f"user{i}" for i in range(200)]
    assert [first(u) for u in users] == [again(u) for u in users]
    assert all(first(u) != other(u) for u in users)
    assert len({first(u) for u in users}) == len(users)


def test_key_from_file_matches_key_from_environment(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")  # a trailing newline from `echo` is not part of the key
    from_file = privacy.load_pseudonymizer(str(key_file), environ={})
    from_env = privacy.load_pseudonymizer(None, environ={privacy.KEY_ENV_VAR: KEY.decode()})
    assert from_file("bob") == from_env("bob") == privacy.Pseudonymizer(key=KEY)("bob")


def test_key_file_takes_precedence_over_environment(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    chosen = privacy.load_pseudonymizer(str(key_file), environ={privacy.KEY_ENV_VAR: OTHER_KEY.decode()})
    assert chosen("bob") == privacy.Pseudonymizer(key=KEY)("bob")


def test_missing_key_names_both_ways_to_give_one():
    with pytest.raises(privacy.PseudonymKeyError, match=r"TFRS_MM_PSEUDONYM_KEY.*--pseudonym-key-file"):
        privacy.load_pseudonymizer(None, environ={})
    with pytest.raises(ValueError):  # PseudonymKeyError is a ValueError: the CLI reports it cleanly
        privacy.load_pseudonymizer(None, environ={privacy.KEY_ENV_VAR: "  "})


def test_missing_or_short_key_file_is_rejected_without_showing_the_key(tmp_path):
    with pytest.raises(privacy.PseudonymKeyError, match="not found"):
        privacy.load_pseudonymizer(str(tmp_path / "absent"), environ={})
    short = tmp_path / "short"
    short.write_bytes(b"hunter2")
    with pytest.raises(privacy.PseudonymKeyError, match="at least 16 bytes, got 7") as error:
        privacy.load_pseudonymizer(str(short), environ={})
    assert "hunter2" not in str(error.value)


def test_repr_hides_the_key():
    assert KEY.decode() not in repr(privacy.Pseudonymizer(key=KEY))
    assert "hidden" in repr(privacy.Pseudonymizer(key=KEY))


def test_pickled_file_pseudonymizer_carries_the_path_not_the_key(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    pseudonymizer = privacy.Pseudonymizer(key_file=str(key_file))
    payload = pickle.dumps(pseudonymizer)
    assert KEY not in payload
    assert pickle.loads(payload)("carol") == pseudonymizer("carol")


def test_constructor_needs_exactly_one_key_source(tmp_path):
    with pytest.raises(privacy.PseudonymKeyError):
        privacy.Pseudonymizer()
    with pytest.raises(privacy.PseudonymKeyError):
        privacy.Pseudonymizer(key=KEY, key_file=str(tmp_path / "key"))
