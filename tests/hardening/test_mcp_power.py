"""Over MCP, configure_orchestrator changes only settings that cannot run commands or widen permissions
(break 10): a model connected over MCP could otherwise set on_event, gate or claude_args and run anything
outside every permission prompt."""

from __future__ import annotations

import json

from hardening_helpers import git, mcp_call, mcp_error, mcp_run

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


APPROVE = '{"verdict": "approve", "comments": [], "summary": "Looks right."}'
FEATURE = (
    "Add a greeting\n"
    "@fake if-role implementer if-new write greeting.py hi\\n\n"
    "@fake if-role implementer if-new commit Add greeting\n"
    f"@fake if-role reviewer structured {APPROVE}\n"
)


def test_mcp_cannot_approve_a_merge_that_waits_for_a_person(orch):
    """merge_approval is a person's setting, and so is the approval it waits for: a model told to by
    something it read must not put agents' work on main, neither by the workflow nor by one of its steps,
    cancelled or not."""
    orch.run("config", "set", "merge_approval", "true", check=True)
    orch.run("config", "set", "autostart", "false", check=True)  # `serve` starts no scheduler of its own
    wf_id = orch.run("workflow", "start", "--no-start", "feature", FEATURE, check=True).stdout.strip()
    assert orch.work().returncode == 0
    main_before = git(orch.repo, "rev-parse", "main")
    wf = json.loads(orch.run("workflow", "show", wf_id, "--json", check=True).stdout)
    assert wf["state"] == "awaiting_merge"
    source = next(i["task"] for i in wf["instances"] if i["step"] == "implement")

    async def scenario(session):
        for args in ({"ref": wf_id}, {"ref": wf_id, "strategy": "squash"}, {"ref": wf_id, "into": "main"}):
            message = await mcp_error(session, "merge", **args)
            assert f"a person approves it with 'orchestra merge {wf_id}'" in message, (args, message)
        await _step_refused(session, source, wf_id)

    mcp_run(orch, scenario)
    assert orch.work().returncode == 0
    assert git(orch.repo, "rev-parse", "main") == main_before
    assert json.loads(orch.run("workflow", "show", wf_id, "--json", check=True).stdout)["state"] == "awaiting_merge"
    orch.run("workflow", "cancel", wf_id, check=True)
    mcp_run(orch, lambda session: _step_refused(session, source, wf_id))
    assert git(orch.repo, "rev-parse", "main") == main_before
    orch.run("merge", source, check=True)  # a person may
    assert git(orch.repo, "show", "main:greeting.py") == "hi"


async def _step_refused(session, step: str, wf_id: str) -> None:
    message = await mcp_error(session, "merge", ref=step)
    assert f"a step of workflow {wf_id}: merge the workflow" in message, message


def test_mcp_merges_a_workflow_only_when_its_review_approved(orch):
    request = FEATURE.replace(APPROVE, '{"verdict": "request_changes", "comments": [], "summary": "No."}')
    orch.run("config", "set", "autostart", "false", check=True)
    orch.run("config", "set", "revision_rounds", "0", check=True)
    wf_id = orch.run("workflow", "start", "--no-start", "feature", request, check=True).stdout.strip()
    assert orch.work().returncode == 0
    assert json.loads(orch.run("workflow", "show", wf_id, "--json", check=True).stdout)["state"] == "changes_requested"
    main_before = git(orch.repo, "rev-parse", "main")

    async def scenario(session):
        message = await mcp_error(session, "merge", ref=wf_id)
        assert "its review did not approve the work, so a person decides" in message, message

    mcp_run(orch, scenario)
    assert git(orch.repo, "rev-parse", "main") == main_before
