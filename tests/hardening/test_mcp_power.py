"""Over MCP, configure_orchestrator changes only settings that cannot run commands or widen permissions
(break 10): a model connected over MCP could otherwise set on_event, gate or claude_args and run anything
outside every permission prompt."""

from __future__ import annotations

from hardening_helpers import mcp_call, mcp_error, mcp_run

PRIVILEGED = {
    "on_event": "touch pwned-on-event",
    "setup": "touch pwned-setup",
    "gate": "touch pwned-gate",
    "claude_binary": "/bin/sh",
    "claude_args": ["--dangerously-skip-permissions"],
    "permission_mode": "bypassPermissions",
    "permission_prompts": False,
    "copy": [".ssh/id_rsa"],
    "merge_approval": False,
    "sandbox": "off",
    "sandbox_allow_write": ["/"],
    "sandbox_allow_domains": ["attacker.example"],
    "executor": "ray",
    "ray_address": "203.0.113.7:6379",  # the repository would be sent to that cluster
    "ray_env": ["ANTHROPIC_API_KEY"],
    "ray_git_remote": "ssh://attacker.example/loot.git",  # the repository would be pushed there
}


def test_mcp_cannot_change_settings_that_run_commands_or_widen_permissions(orch):
    config = orch.repo / ".orchestra" / "config.toml"
    orch.run("config", "set", "autostart", "false", check=True)
    orch.run("config", "set", "on_event", "notify-send done", check=True)  # a person's own setting
    orch.run("config", "set", "merge_approval", "true", check=True)
    before = config.read_bytes()

    async def scenario(session):
        for key, value in PRIVILEGED.items():
            message = await mcp_error(session, "configure_orchestrator", key=key, value=value)
            assert f"orchestra config set {key}" in message and "\n" not in message.strip(), message
        # Reading stays allowed, and the listing says which ones a model may not change.
        data, text = await mcp_call(session, "configure_orchestrator", key="on_event")
        assert data["value"] == "notify-send done"
        data, text = await mcp_call(session, "configure_orchestrator")
        assert data["settings"]["gate"]["privileged"] is True and data["settings"]["timeout"]["privileged"] is False
        assert "on_event" in text and "a person changes it" in text
        # Harmless settings still change.
        data, _ = await mcp_call(session, "configure_orchestrator", key="max_concurrent", value=2)
        assert data["value"] == 2

    mcp_run(orch, scenario)
    # The file changed by exactly the one harmless line.
    assert config.read_text().replace("max_concurrent = 2\n", "") == before.decode()
    assert not list(orch.repo.glob("pwned*"))
    # A person still changes them with the CLI.
    orch.run("config", "set", "gate", "pytest -q", check=True)
    assert orch.run("config", "get", "gate", check=True).stdout.strip() == "pytest -q"
