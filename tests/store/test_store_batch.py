"""`submit --batch` and MCP submit_task's `tasks`: many tasks in one write, all or nothing."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client


def _batch(orch, lines: list[object], *args: str):
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    return orch.run("submit", "--no-start", "--batch", "-", *args, input=text)


def _index_gen(orch) -> int:
    return json.loads((orch.repo / ".orchestra" / "index.json").read_text())["gen"]


def test_a_batch_submits_every_task_with_dependencies_by_position_and_key(orch):
    existing = orch.submit("already there")
    gen = _index_gen(orch)
    proc = _batch(
        orch,
        [
            {"prompt": "Design the export", "role": "architect", "key": "design"},
            "",  # blank lines are skipped; #N still counts lines
            {"prompt": "Build it", "role": "implementer", "on": "design", "priority": 5, "key": "build"},
            {"prompt": "Test it", "role": "tester", "after": ["#3", existing[:5]], "timeout": "30m", "title": "Tests"},
            {"prompt": "Document it", "depends_on": "build", "budget_usd": "0.5", "base": "main"},
        ],
    )
    assert proc.returncode == 0, proc.stderr
    ids = proc.stdout.split()
    assert len(ids) == 4 and existing not in ids
    design, build, test, docs = (orch.show(i) for i in ids)
    assert design["depends_on"] == [] and design["role"] == "architect"
    assert build["depends_on"] == [design["id"]] and build["on"] == design["id"]
    assert build["base_ref"] == design["branch"] and build["priority"] == 5
    assert set(test["depends_on"]) == {build["id"], existing} and test["timeout"] == 1800 and test["title"] == "Tests"
    assert docs["depends_on"] == [build["id"]] and docs["budget_usd"] == 0.5 and docs["base_ref"] == "main"
    assert _index_gen(orch) == gen + 1  # the whole batch is one index update
    for tid in ids:
        events = (orch.repo / ".orchestra" / "events" / f"{tid}.jsonl").read_text().splitlines()
        assert [json.loads(e)["event"] for e in events] == ["submitted"]
    queue = json.loads(orch.run("queue", "--json", check=True).stdout)
    assert [r["id"] for r in queue if r["ready"]] == [existing, design["id"]]
    as_json = _batch(orch, [{"prompt": "one more"}], "--json")
    assert [t["prompt"] for t in json.loads(as_json.stdout)] == ["one more"]


def test_a_bad_batch_submits_nothing_and_names_every_bad_line(orch):
    existing = orch.submit("already there")
    proc = _batch(
        orch,
        [
            {"prompt": "fine", "key": "a"},
            {"prompt": ""},
            {"prompt": "fine too", "after": ["a"]},
            {"prompt": "x", "role": "testr"},
            "not json at all",
            {"prompt": "x", "after": ["#9"]},
            {"prompt": "x", "prio": 3},
            {"prompt": "x", "after": ["nosuchtask"]},
            {"prompt": "x", "base": "no-such-ref"},
            {"prompt": "x", "on": "a", "base": "main"},
            {"prompt": "x", "key": "a"},
            {"prompt": "x", "after": [existing], "priority": 5000},
            {"prompt": "x", "after": ["#2"]},  # a refused line: not named again
            ["a", "list"],
            {"prompt": 5},
        ],
    )
    assert proc.returncode == 1
    err = proc.stderr
    assert err.startswith("orchestra: error: 12 of 15 lines refused; nothing was submitted:")
    for number, words in {
        2: "empty prompt",
        4: "unknown role 'testr'",
        5: "not JSON",
        6: "#9 names line 9, which is not before this one",
        7: "unknown field 'prio' (did you mean 'priority'?)",
        8: "no task nosuchtask",
        9: "'no-such-ref' does not name a commit",
        10: "either --on",
        11: "key 'a' is already used by line 1",
        12: "priority",
        14: "expected a JSON object",
        15: "prompt must be a string",
    }.items():
        assert f"\nline {number}: " in err and words in err.split(f"\nline {number}: ", 1)[1].split("\n")[0], (
            number,
            err,
        )
    for number in (1, 3, 13):
        assert f"\nline {number}: " not in err
    assert sorted(p.stem for p in (orch.repo / ".orchestra" / "tasks").glob("*.json")) == [existing]
    assert orch.run("submit", "--no-start", "--batch", "-", "--role", "tester", input="{}").returncode == 2
    assert "empty batch" in orch.run("submit", "--no-start", "--batch", "-", input="\n\n").stderr


@contextlib.asynccontextmanager
async def _mcp(orch: Any) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "orchestra", "serve"], env=orch.env, cwd=str(orch.repo)
    )
    with open(Path(orch.repo).parent / "serve-stderr.log", "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


def test_mcp_submit_task_takes_a_batch_with_the_same_checks(orch):
    orch.run("config", "set", "autostart", "false", check=True)
    results: dict[str, Any] = {}

    async def scenario() -> None:
        async with _mcp(orch) as session:
            good = await session.call_tool(
                "submit_task",
                {
                    "tasks": [
                        {"prompt": "plan", "role": "architect", "key": "plan"},
                        {"prompt": "build", "on": "plan"},
                        {"prompt": "check", "role": "tester", "depends_on": ["#2"]},
                    ]
                },
            )
            results["good"] = good
            results["bad"] = await session.call_tool(
                "submit_task", {"tasks": [{"prompt": "fine"}, {"prompt": "x", "role": "nope"}, {"after": ["#1"]}]}
            )
            results["both"] = await session.call_tool("submit_task", {"prompt": "one", "tasks": [{"prompt": "two"}]})
            results["mixed"] = await session.call_tool("submit_task", {"role": "tester", "tasks": [{"prompt": "two"}]})

    anyio.run(scenario)
    good = results["good"]
    assert not good.is_error, good.content
    made = good.structured_content["tasks"]
    assert [t["role"] for t in made] == ["architect", "generalist", "tester"]
    assert made[1]["depends_on"] == [made[0]["id"]] and made[1]["on"] == made[0]["id"]
    assert made[2]["depends_on"] == [made[1]["id"]]
    bad = results["bad"]
    text = bad.content[0].text
    assert bad.is_error and "2 of 3 tasks refused; nothing was submitted" in text
    assert "task 2: unknown role 'nope'" in text and "task 3: no prompt" in text and "task 1:" not in text
    assert results["both"].is_error and results["mixed"].is_error
    assert "inside its object" in results["mixed"].content[0].text
    assert len(list((orch.repo / ".orchestra" / "tasks").glob("*.json"))) == 3
