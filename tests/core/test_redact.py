"""orchestra.core.redact: credentials are masked before anyone sees them.

test_mask_secrets moved here from agent/test_transcript.py: it tests the shapes of
secrets, which the transcript renderer only uses.
"""

from __future__ import annotations

from orchestra.core.redact import mask_secrets

KEY = "sk-ant-api03-" + "Ab3_dE-f" * 10


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
