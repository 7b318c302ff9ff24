"""orchestra.core.redact: credentials are masked by shape, by value, and by fingerprint.

test_mask_secrets moved here from agent/test_transcript.py (it tests the shapes, which the
transcript renderer only uses).
"""

from __future__ import annotations

import json

import pytest

from orchestra.core import redact
from orchestra.core.redact import Redactor, fingerprints, mask_secrets, merge_fingerprints, secret_values

KEY = "sk-ant-api03-" + "Ab3_dE-f" * 10
TOKEN = "ghp_" + "Qw7xYz" * 6  # no shape gives this away: only its value or its fingerprint can


@pytest.fixture(autouse=True)
def _keep_the_process_redactor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shape tests use the process-wide redactor; whatever a test installs is undone."""
    monkeypatch.setattr(redact, "_default", Redactor())


def test_mask_secrets() -> None:
    assert KEY not in mask_secrets(f"key {KEY} end")
    assert mask_secrets(f"key {KEY} end") == "key sk-ant-*** end"
    assert mask_secrets("ANTHROPIC_API_KEY=abcd1234efgh5678") == "ANTHROPIC_API_KEY=***"
    assert mask_secrets('"GITHUB_TOKEN": "ghp_0123456789abcdef"') == '"GITHUB_TOKEN": "***"'
    assert mask_secrets("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345") == "Authorization: Bearer ***"
    # References and short placeholders are not secrets; leave them readable.
    assert mask_secrets("export ANTHROPIC_API_KEY=$ANTHROPIC_API_KEY_FROM_VAULT") == (
        "export ANTHROPIC_API_KEY=$ANTHROPIC_API_KEY_FROM_VAULT"
    )
    assert mask_secrets("ANTHROPIC_API_KEY=none") == "ANTHROPIC_API_KEY=none"
    assert mask_secrets('"apiKeySource":"ANTHROPIC_API_KEY"') == '"apiKeySource":"ANTHROPIC_API_KEY"'
    assert mask_secrets("MAX_TOKENS=128000000") == "MAX_TOKENS=128000000"


def test_secret_values_are_the_secret_looking_variables_longest_first():
    env = {
        "ANTHROPIC_API_KEY": KEY,
        "GITHUB_TOKEN": TOKEN,
        "DB_PASSWORD": "hunter2hunter2",
        "SHORT_TOKEN": "abc",  # too short to mask without hiding ordinary words
        "PATH": "/usr/local/bin:/usr/bin",
        "MONKEY": "not-a-secret-at-all",
        "AWS_SECRET": TOKEN,  # the same value twice is one value
    }
    assert secret_values(env) == [KEY, TOKEN, "hunter2hunter2"]


def test_known_values_are_masked_wherever_they_appear():
    r = Redactor([TOKEN, "abc"])
    assert r.mask(f"clone https://x:{TOKEN}@github.com/o/r") == "clone https://x:***@github.com/o/r"
    assert r.mask(f"{TOKEN}{TOKEN}") == "******"
    assert r.mask("abc stays: short values are not masked") == "abc stays: short values are not masked"
    data = {"cmd": f"echo {TOKEN}", TOKEN: [f"x {TOKEN}", 3, None]}
    assert r.mask_data(data) == {"cmd": "echo ***", "***": ["x ***", 3, None]}


def test_a_reader_with_only_the_fingerprints_masks_a_value_it_never_saw():
    stored = json.loads(json.dumps(fingerprints([TOKEN, "hunter2hunter2"])))  # as read back from the file
    assert TOKEN not in json.dumps(stored) and "hunter2" not in json.dumps(stored)
    reader = Redactor((), stored)  # no values: this process never had the variables
    assert reader.values == ()
    assert reader.mask(f"token: {TOKEN} end") == "token: *** end"
    assert reader.mask(f"GITHUB_TOKEN={TOKEN}") == "GITHUB_TOKEN=***"
    assert reader.mask("password: hunter2hunter2 (old)") == "password: *** (old)"
    assert reader.mask("db=postgres password:hunter2hunter2") == "db=postgres password:***"
    assert reader.mask(f"gh --auth={TOKEN}") == "gh --auth=***"
    # Only those values: another token of the same length, or a longer one that contains it, stays.
    other = "ghp_" + "Aa1bB2" * 6
    assert reader.mask(f"token: {other}") == f"token: {other}"
    assert reader.mask(f"{TOKEN}x") == f"{TOKEN}x"


@pytest.mark.parametrize("text", [f"the token is {TOKEN}.", f"https://x:{TOKEN}@github.com/o/r"])
def test_a_reader_with_only_the_fingerprints_masks_a_value_inside_a_longer_token(text):
    assert TOKEN in text and Redactor([TOKEN]).mask(text).count("***") == 1
    assert TOKEN not in Redactor((), fingerprints([TOKEN])).mask(text)


def test_fingerprints_are_salted():
    one, two = fingerprints([TOKEN]), fingerprints([TOKEN])
    assert one["salt"] != two["salt"] and one["hashes"] != two["hashes"]
    forged = {"salt": "other", "hashes": one["hashes"]}
    assert Redactor((), forged).mask(TOKEN) == TOKEN


def test_merged_fingerprints_keep_the_salt_and_the_old_values():
    old = fingerprints([TOKEN])
    new_value = "rotated-" + "Zz9" * 6
    merged = merge_fingerprints(old, [new_value])
    assert merged["salt"] == old["salt"]
    reader = Redactor((), merged)
    assert reader.mask(f"{TOKEN} {new_value}") == "*** ***"  # logs from before the rotation stay masked
    fresh = merge_fingerprints(None, [new_value])
    assert Redactor((), fresh).mask(new_value) == "***"


def test_malformed_fingerprints_mask_nothing_and_raise_nothing():
    for bad in ({"salt": 3, "hashes": "x"}, {"hashes": {"x": ["y"], "12": "z"}}, {}):
        assert Redactor((), bad).mask(f"echo {TOKEN}") == f"echo {TOKEN}"
