"""Workflows end to end: real repos, the real scheduler, a fake claude scripted per role.

The request is woven into every step's prompt, so `@fake if-role <role> ...` lines in it
script each role; the assertions are on the resulting git history.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import git

APPROVE = '{"verdict": "approve", "comments": [], "summary": "Looks right."}'
CHANGES = (
    '{"verdict": "request_changes", "comments": [{"file": "greeting.py", "line": 1, '
    '"comment": "say hello, not hi"}], "summary": "Wrong greeting."}'
)

FEATURE = """Add a greeting module
@fake if-role architect write docs/design/greeting.md Use one function greet().
@fake if-role implementer if-new write greeting.py def greet():\\n    return "hi"\\n
@fake if-role implementer if-new commit Add greeting
@fake if-role tester write test_greeting.py from greeting import greet\\n
@fake if-role tester commit Test greeting
"""


def start(orch, template: str, request: str, *args: str) -> str:
    return orch.run("workflow", "start", "--no-start", *args, template, request, check=True).stdout.strip()


def workflow(orch, wf_id: str) -> dict:
    return json.loads(orch.run("workflow", "show", wf_id, "--json", check=True).stdout)


def config(orch, text: str) -> None:
    state = orch.repo / ".orchestra"
    state.mkdir(exist_ok=True)
    (state / "config.toml").write_text(text)


def refs(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads")
    return dict(line.split() for line in out.splitlines())


def steps(wf: dict) -> list[tuple[str, int, str]]:
    return [(i["step"], i["round"], wf["tasks"][i["task"]]["state"]) for i in wf["instances"]]


def task_of(wf: dict, step: str, round_: int = 1) -> dict:
    for inst in wf["instances"]:
        if inst["step"] == step and inst["round"] == round_:
            return wf["tasks"][inst["task"]]
    raise AssertionError(f"no {step} in round {round_}: {steps(wf)}")


def test_feature_workflow_merges_into_the_checked_out_base(orch):
    config(orch, 'gate = "test -f greeting.py && test -f test_greeting.py"\n')
    git(orch.repo, "branch", "unrelated")
    before = refs(orch.repo)
    wf_id = start(orch, "feature", FEATURE + f"@fake if-role reviewer structured {APPROVE}\n")
    assert wf_id.startswith("w")
    proc = orch.work()
    assert proc.returncode == 0, proc.stderr
    waited = orch.run("workflow", "wait", wf_id, "--timeout", "30")
    assert waited.returncode == 0 and waited.stdout.strip() == f"{wf_id} succeeded"
    wf = workflow(orch, wf_id)
    # Spend per workflow: the sum over its tasks, in the JSON and the text view.
    agent_cost = round(sum(t["cost_usd"] or 0 for t in wf["tasks"].values()), 6)
    assert wf["spend"]["tasks"] == 5 and wf["spend"]["cost_usd"] == agent_cost > 0
    assert f"spent      ${agent_cost:.4f} over 5 task(s)" in orch.run("workflow", "show", wf_id, check=True).stdout
    assert wf["state"] == "succeeded", wf
    assert steps(wf) == [
        ("design", 1, "succeeded"),
        ("implement", 1, "succeeded"),
        ("test", 1, "succeeded"),
        ("review", 1, "succeeded"),
        ("merge", 1, "succeeded"),
    ]
    design, impl, test = task_of(wf, "design"), task_of(wf, "implement"), task_of(wf, "test")
    # Hand-off: each step starts at the head of the branch before it.
    assert impl["base_sha"] == git(orch.repo, "rev-parse", design["branch"])
    assert test["base_sha"] == git(orch.repo, "rev-parse", impl["branch"])
    # main got exactly one merge commit: old main + the tester's branch, in the user's checkout too.
    main = git(orch.repo, "rev-parse", "main")
    assert git(orch.repo, "rev-parse", f"{main}^1") == before["refs/heads/main"]
    assert git(orch.repo, "rev-parse", f"{main}^2") == git(orch.repo, "rev-parse", test["branch"])
    assert wf_id in git(orch.repo, "log", "-1", "--format=%B", "main")
    assert git(orch.repo, "rev-parse", "HEAD") == main
    assert (orch.repo / "greeting.py").read_text() == 'def greet():\n    return "hi"\n'
    assert git(orch.repo, "status", "--porcelain") == ""
    # Nothing else moved; the only new branches are the tasks' own.
    after = refs(orch.repo)
    assert after["refs/heads/unrelated"] == before["refs/heads/unrelated"]
    assert set(after) - set(before) == {
        f"refs/heads/{task_of(wf, s)['branch']}" for s in ("design", "implement", "test", "review")
    }
    assert wf["merge"]["status"] == "merged" and wf["merge"]["new_sha"] == main
    # The reviewer could only read, was asked for a verdict, and saw the commits and the diff stat.
    calls = {c["env"].get("ORCHESTRA_ROLE"): c for c in orch.invocations()}
    argv = calls["reviewer"]["argv"]
    assert argv[argv.index("--tools") + 1] == "Read,Grep,Glob"
    assert json.loads(argv[argv.index("--json-schema") + 1])["required"] == ["verdict", "comments", "summary"]
    assert "--permission-mode" not in argv and "--settings" not in argv
    prompt = task_of(wf, "review")["prompt"]
    assert "Add greeting" in prompt and "greeting.py" in prompt and "3 files changed" in prompt
    assert "Add a greeting module" in task_of(wf, "design")["prompt"]
    listed = json.loads(orch.run("workflow", "list", "--json", check=True).stdout)
    assert [w["id"] for w in listed] == [wf_id]
    text = orch.run("workflow", "show", wf_id, check=True).stdout
    assert "merge" in text and "verdict: approve" in text


def test_request_changes_starts_a_revision_that_resumes_the_implementer(orch):
    request = FEATURE + (
        '@fake if-role implementer if-resume write greeting.py def greet():\\n    return "hello"\\n\n'
        "@fake if-role implementer if-resume commit Say hello\n"
        f"@fake if-role reviewer if-role-run 1 structured {CHANGES}\n"
        f"@fake if-role reviewer if-role-run 2+ structured {APPROVE}\n"
    )
    wf_id = start(orch, "feature", request)
    assert orch.work().returncode == 0
    wf = workflow(orch, wf_id)
    assert wf["state"] == "succeeded", wf
    assert wf["round"] == 2
    assert steps(wf) == [
        ("design", 1, "succeeded"),
        ("implement", 1, "succeeded"),
        ("test", 1, "succeeded"),
        ("review", 1, "succeeded"),
        ("implement", 2, "succeeded"),
        ("test", 2, "succeeded"),
        ("review", 2, "succeeded"),
        ("merge", 2, "succeeded"),
    ]
    impl1, impl2 = task_of(wf, "implement", 1), task_of(wf, "implement", 2)
    test1, test2 = task_of(wf, "test", 1), task_of(wf, "test", 2)
    # Same branch, same Claude session, and the review comments in the new prompt.
    assert impl2["branch"] == impl1["branch"]
    assert impl2["session_id"] == impl1["session_id"]
    call = next(c for c in orch.invocations() if c["env"].get("ORCHESTRA_TASK_ID") == impl2["id"])
    assert call["argv"][call["argv"].index("--resume") + 1] == impl1["session_id"]
    assert "say hello, not hi" in call["argv"][-1] and "greeting.py:1" in call["argv"][-1]
    # The implementer's branch took in the first round's tests, then got the fix on top.
    history = git(orch.repo, "log", "--format=%s", impl1["branch"]).splitlines()
    assert history[:3] == ["Say hello", "Test greeting", "Add greeting"]
    assert test2["base_sha"] == git(orch.repo, "rev-parse", impl1["branch"])
    assert git(orch.repo, "rev-parse", test1["branch"]) == git(orch.repo, "rev-parse", f"{impl1['branch']}~1")
    # The second reviewer was told what the first one asked for, and main got the fixed code.
    assert "say hello, not hi" in task_of(wf, "review", 2)["prompt"]
    assert git(orch.repo, "show", "main:greeting.py") == 'def greet():\n    return "hello"'
    assert git(orch.repo, "rev-parse", "main^2") == git(orch.repo, "rev-parse", test2["branch"])


def test_changes_requested_after_the_last_round_merges_nothing(orch):
    config(orch, "revision_rounds = 1\n")
    main = git(orch.repo, "rev-parse", "main")
    wf_id = start(orch, "feature", FEATURE + f"@fake if-role reviewer structured {CHANGES}\n")
    assert orch.work().returncode == 0
    wf = workflow(orch, wf_id)
    assert wf["state"] == "changes_requested", wf
    assert [s for s in steps(wf) if s[0] in ("review", "merge")] == [
        ("review", 1, "succeeded"),
        ("review", 2, "succeeded"),
    ]
    assert wf["comments"][0]["comments"][0]["comment"] == "say hello, not hi"
    assert git(orch.repo, "rev-parse", "main") == main
    text = orch.run("workflow", "show", wf_id, check=True).stdout
    assert "changes_requested" in text and "greeting.py:1: say hello, not hi" in text


def test_reviewer_without_a_verdict_fails_with_that_reason(orch):
    tid = orch.submit("Review the change\n@fake text Looks fine to me.", "--role", "reviewer")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    assert task["state"] == "failed"
    assert task["error"] == "no verdict: the run returned no structured output"


def test_failing_gate_leaves_the_target_alone(orch):
    config(orch, 'gate = "echo gate ran in $(basename $(pwd)); exit 3"\n')
    main = git(orch.repo, "rev-parse", "main")
    wf_id = start(orch, "feature", FEATURE + f"@fake if-role reviewer structured {APPROVE}\n")
    assert orch.work().returncode == 0
    wf = workflow(orch, wf_id)
    assert wf["state"] == "failed", wf
    assert "gate command failed (exit 3)" in wf["error"]
    result = task_of(wf, "merge")["merge_result"]
    assert result["status"] == "gate_failed" and result["gate"]["tail"][0].startswith("gate ran in ")
    assert git(orch.repo, "rev-parse", "main") == main
    assert git(orch.repo, "status", "--porcelain") == ""
    assert not list((orch.repo / ".orchestra" / "merges").iterdir())  # the temporary worktree is gone


def test_dirty_checkout_of_the_target_is_left_exactly_as_it_was(orch):
    wf_id = start(orch, "feature", FEATURE + f"@fake if-role reviewer structured {APPROVE}\n")
    (orch.repo / "README.md").write_text("# demo\nmy edit\n")
    main = git(orch.repo, "rev-parse", "main")
    assert orch.work().returncode == 0
    wf = workflow(orch, wf_id)
    assert wf["state"] == "failed"
    assert "uncommitted changes (README.md)" in wf["error"] and "left exactly as it was" in wf["error"]
    assert git(orch.repo, "rev-parse", "main") == main
    assert (orch.repo / "README.md").read_text() == "# demo\nmy edit\n"
    assert git(orch.repo, "status", "--porcelain") == "M README.md"
    # Once the user's edit is committed, a manual merge finishes the workflow.
    git(orch.repo, "commit", "-qam", "my edit")
    proc = orch.run("merge", wf_id)
    assert proc.returncode == 0, proc.stderr
    assert "merged" in proc.stdout
    assert workflow(orch, wf_id)["state"] == "succeeded"
    assert git(orch.repo, "rev-parse", "main^1") == git(orch.repo, "rev-parse", "HEAD^1")
    assert (orch.repo / "greeting.py").exists()


def test_conflicting_branches_stop_as_conflict_and_resolve_retries(orch):
    request = FEATURE.replace("Use one function greet().", "design") + (
        "@fake if-role implementer write README.md # demo\\nfrom the feature\\n\n"
        f"@fake if-role reviewer structured {APPROVE}\n"
    )
    wf_id = start(orch, "feature", request)
    (orch.repo / "README.md").write_text("# demo\nfrom main\n")
    git(orch.repo, "commit", "-qam", "main changes the readme")
    main = git(orch.repo, "rev-parse", "main")
    assert orch.work().returncode == 0
    wf = workflow(orch, wf_id)
    assert wf["state"] == "conflict", wf
    assert wf["conflict"]["files"] == ["README.md"]
    assert git(orch.repo, "rev-parse", "main") == main
    assert git(orch.repo, "status", "--porcelain") == ""
    assert not (orch.repo / ".git" / "MERGE_HEAD").exists()
    text = orch.run("workflow", "show", wf_id, check=True).stdout
    assert "README.md" in text and "--resolve" in text
    # A plain `merge` reports the same conflict, with a non-zero exit.
    plain = orch.run("merge", wf_id)
    assert plain.returncode == 1 and "README.md" in plain.stderr
    resolved = orch.run("merge", wf_id, "--resolve", "--no-start", check=True)
    assert "to resolve the conflict" in resolved.stdout
    assert orch.work().returncode == 0
    wf = workflow(orch, wf_id)
    assert wf["state"] == "succeeded", wf
    resolver = task_of(wf, "resolve")
    assert resolver["role"] == "implementer" and resolver["branch"] == task_of(wf, "test")["branch"]
    assert git(orch.repo, "show", "main:README.md") == "# demo\nfrom the feature"
    assert git(orch.repo, "merge-base", "--is-ancestor", main, "main") == ""


def test_conflicting_plain_tasks(orch):
    a = orch.submit("one\n@fake write README.md # demo\\nA\\n")
    b = orch.submit("two\n@fake write README.md # demo\\nB\\n")
    assert orch.work().returncode == 0
    first = orch.run("merge", a, "--strategy", "squash")
    assert first.returncode == 0, first.stderr
    squashed = git(orch.repo, "rev-parse", "main")
    assert git(orch.repo, "rev-list", "--count", "main") == "2"  # one squash commit on top
    second = orch.run("merge", b)
    assert second.returncode == 1
    assert "conflicts in 1 file(s): README.md" in second.stderr
    assert f"to let an implementer resolve it: orchestra merge {b} --resolve" in second.stderr
    assert git(orch.repo, "rev-parse", "main") == squashed
    assert (orch.repo / "README.md").read_text() == "# demo\nA\n"
    ff = orch.run("merge", b, "--strategy", "ff-only")
    assert ff.returncode == 1 and "cannot be fast-forwarded" in ff.stderr


def test_code_review_consolidates_parallel_passes(orch):
    git(orch.repo, "checkout", "-q", "-b", "feature")
    (orch.repo / "app.py").write_text("print('app')\n")
    git(orch.repo, "add", "app.py")
    git(orch.repo, "commit", "-qm", "Add app")
    git(orch.repo, "checkout", "-q", "main")
    before = refs(orch.repo)
    request = (
        f"Review the app\n@fake if-role reviewer if-role-run 1 structured {CHANGES}\n"
        f"@fake if-role reviewer if-role-run 2+ structured {APPROVE}\n"
    )
    wf_id = start(orch, "code-review", request, "--base", "feature")
    assert orch.work().returncode == 0
    wf = workflow(orch, wf_id)
    assert wf["state"] == "succeeded", wf
    assert wf["verdict"] == "request_changes"
    passes = ["correctness", "security", "performance", "docs"]
    assert [s for s, _, _ in steps(wf)] == passes + ["report"]
    runs = [(task_of(wf, p)["started_at"], task_of(wf, p)["finished_at"]) for p in passes]
    assert max(s for s, _ in runs) < min(f for _, f in runs)  # the passes ran side by side
    for p in passes:
        assert f"## {p}: " in wf["report"]
        assert "Add app" in task_of(wf, p)["prompt"]
    assert wf["report"].count("request_changes") == 1 and "say hello, not hi" in wf["report"]
    for call in orch.invocations():
        assert call["argv"][call["argv"].index("--tools") + 1] == "Read,Grep,Glob"
    # No merge: the reviewed branch and main did not move.
    after = refs(orch.repo)
    assert all(after[r] == sha for r, sha in before.items())
    assert "Review report: changes requested" in orch.run("workflow", "show", wf_id, check=True).stdout


def test_user_template_with_an_architect_review_pass(orch):
    wdir = orch.repo / ".orchestra" / "workflows"
    wdir.mkdir(parents=True)
    (wdir / "design-review.toml").write_text(
        'description = "An architect reads the design"\nsubject = "range"\n'
        '[[step]]\nname = "arch"\nrole = "architect"\nreview = true\n'
        '[[step]]\nname = "report"\nrole = "report"\nafter = ["arch"]\n'
    )
    listed = json.loads(orch.run("workflow", "templates", "--json", check=True).stdout)
    assert listed["design-review"]["source"].endswith("design-review.toml")
    assert {"feature", "bug-fix", "refactor", "code-review"} <= set(listed)
    (orch.repo / "x.txt").write_text("x\n")
    git(orch.repo, "add", "x.txt")
    git(orch.repo, "commit", "-qm", "Add x")
    wf_id = start(orch, "design-review", f"Check it\n@fake structured {APPROVE}", "--base", "HEAD~1..HEAD")
    assert orch.work().returncode == 0
    wf = workflow(orch, wf_id)
    assert wf["state"] == "succeeded" and wf["verdict"] == "approve"
    (call,) = orch.invocations()
    argv = call["argv"]
    assert call["env"]["ORCHESTRA_ROLE"] == "architect"
    assert argv[argv.index("--tools") + 1] == "Read,Grep,Glob" and "--json-schema" in argv
    assert "--settings" not in argv and "acceptEdits" not in argv


def test_a_template_step_with_resources_gives_them_to_its_task(orch):
    """`resources` on a step reaches the step's task, merged over its role's (where executor = ray places it)."""
    config(orch, '[roles.dbtester]\nextends = "tester"\nresources = {db_box = 1}\n')
    wdir = orch.repo / ".orchestra" / "workflows"
    wdir.mkdir(parents=True)
    (wdir / "placed.toml").write_text(
        '[[step]]\nname = "build"\nrole = "implementer"\nresources = {gpu_box = 2}\n'
        '[[step]]\nname = "test"\nrole = "dbtester"\non = "build"\n'
    )
    wf_id = start(orch, "placed", "Add a greeting")
    wf = workflow(orch, wf_id)
    assert task_of(wf, "build")["resources"] == {"gpu_box": 2.0}
    # Later steps and revision rounds are made from the workflow's own copy of the template.
    assert {s["name"]: s["resources"] for s in wf["steps"]} == {"build": {"gpu_box": 2.0}, "test": {}}
    shown = json.loads(orch.run("show", task_of(wf, "build")["id"], "--json", check=True).stdout)
    assert shown["resources"] == {"gpu_box": 2.0}


def test_template_validation_errors_name_the_file_and_the_problem(orch):
    wdir = orch.repo / ".orchestra" / "workflows"
    wdir.mkdir(parents=True)
    cases = {
        "bad-role": ('[[step]]\nname = "a"\nrole = "wizard"\n', "step 'a': unknown role 'wizard'"),
        "cycle": (
            '[[step]]\nname = "a"\nrole = "tester"\non = "b"\n'
            '[[step]]\nname = "b"\nrole = "implementer"\nafter = ["a"]\n',
            "steps form a cycle: a -> b -> a",
        ),
        "dangling": (
            '[[step]]\nname = "a"\nrole = "tester"\nafter = ["ghost"]\n',
            "step 'a' refers to unknown step 'ghost'",
        ),
        "typo": ('[[step]]\nname = "a"\nrole = "tester"\nrevize = true\n', "step 'a': unknown field 'revize'"),
        "merge-no-on": ('[[step]]\nname = "m"\nrole = "merge"\n', "step 'm': a merge step needs 'on'"),
    }
    for name, (body, message) in cases.items():
        for other in wdir.glob("*.toml"):
            other.unlink()
        path = wdir / f"{name}.toml"
        path.write_text(body)
        proc = orch.run("workflow", "templates")
        assert proc.returncode == 1, name
        assert proc.stderr.startswith(f"orchestra: error: {path}: {message}"), proc.stderr
        assert "Traceback" not in proc.stderr
        start_proc = orch.run("workflow", "start", "--no-start", name, "do it")
        assert start_proc.returncode == 1 and message in start_proc.stderr
    unknown = orch.run("workflow", "start", "--no-start", "nonesuch", "do it")
    assert unknown.returncode == 1 and "unknown workflow template 'nonesuch'" in unknown.stderr
    assert not (wdir / "nonesuch.json").exists() and not list(wdir.glob("w*.json"))


def test_role_files_override_extend_and_fail_clearly(orch):
    rdir = orch.repo / ".orchestra" / "roles"
    rdir.mkdir(parents=True)
    config(orch, "[roles.implementer]\nmax_turns = 5\n")
    (rdir / "security.toml").write_text(
        'extends = "reviewer"\ndescription = "Security review"\nsystem_prompt = "Look for injection."\n'
    )
    listing = json.loads(orch.run("roles", "--json", check=True).stdout)
    assert listing["implementer"]["max_turns"] == 5
    assert "config.toml [roles.implementer] (overrides built-in)" in listing["implementer"]["source"]
    assert listing["security"]["source"] == str(rdir / "security.toml")
    assert listing["security"]["tools"] == ["Read", "Grep", "Glob"] and listing["security"]["produces"] == "verdict"
    assert listing["merge"]["agent"] is False
    table = orch.run("roles", check=True).stdout
    assert "security" in table and str(rdir / "security.toml") in table
    shown = orch.run("roles", "show", "security", check=True).stdout
    assert "Look for injection." in shown and "Read, Grep, Glob" in shown
    tid = orch.submit(f"Check\n@fake structured {APPROVE}", "--role", "security")
    assert orch.work().returncode == 0
    assert orch.show(tid)["state"] == "succeeded"
    assert "--json-schema" in orch.invocations()[0]["argv"]
    refused = orch.run("submit", "--no-start", "--role", "merge", "x")
    assert refused.returncode == 1 and "without an agent" in refused.stderr
    bad = {
        "reviewer.toml": ('tools = ["Read", "Bash"]\n', "field 'tools': a role that produces a verdict may only read"),
        "odd.toml": ('description = "x"\nsystem_prompt = "y"\ncolour = "red"\n', "field 'colour': unknown field"),
        "slow.toml": ('extends = "tester"\ntimeout = "soon"\n', "field 'timeout'"),
        "new.toml": ('description = "x"\n', "field 'system_prompt': missing"),
        "broken.toml": ('description = "x\n', "invalid TOML"),
    }
    for name, (body, message) in bad.items():
        path = rdir / name
        path.write_text(body)
        proc = orch.run("roles")
        assert proc.returncode == 1
        assert proc.stderr.startswith(f"orchestra: error: {path}"), proc.stderr
        assert message in proc.stderr
        path.unlink()
    missing = orch.run("roles", "show", "nobody")
    assert missing.returncode == 1 and "unknown role 'nobody'" in missing.stderr


def test_cleanup_removes_merged_work_and_forces_only_with_a_list(orch):
    wf_id = start(orch, "feature", FEATURE + f"@fake if-role reviewer structured {APPROVE}\n")
    stray = orch.submit("unmerged work\n@fake write stray.txt precious\n@fake commit Precious work")
    git(orch.repo, "branch", "mine")
    assert orch.work().returncode == 0
    assert workflow(orch, wf_id)["state"] == "succeeded"
    stray_task = orch.show(stray)
    worktrees_before = git(orch.repo, "worktree", "list")
    before = refs(orch.repo)
    dry = orch.run("cleanup", "--dry-run", check=True).stdout
    assert "would remove worktree" in dry and "would delete branch" in dry
    assert f"kept branch {stray_task['branch']}: not merged into main (use --force)" in dry
    assert "Precious work" in dry
    assert git(orch.repo, "worktree", "list") == worktrees_before and refs(orch.repo) == before
    report = json.loads(orch.run("cleanup", "--json", check=True).stdout)
    deleted = {b["branch"] for b in report["deleted_branches"]}
    wf = workflow(orch, wf_id)
    assert deleted == {task_of(wf, s)["branch"] for s in ("design", "implement", "test", "review")}
    after = refs(orch.repo)
    assert after["refs/heads/mine"] == before["refs/heads/mine"]
    assert after["refs/heads/main"] == before["refs/heads/main"]
    assert f"refs/heads/{stray_task['branch']}" in after
    assert git(orch.repo, "worktree", "list").count("\n") == 0  # only the main worktree is left
    forced = orch.run("cleanup", "--force", check=True).stdout
    assert forced.index("Precious work") < forced.index("deleted branch")
    assert "UNMERGED, forced" in forced
    assert set(refs(orch.repo)) == {"refs/heads/main", "refs/heads/mine"}
    # Branches cleanup deleted are not reported as lost work.
    doctor = orch.run("doctor")
    assert doctor.returncode == 0 and "branch_missing" not in doctor.stdout, doctor.stdout


def test_cleanup_keeps_the_branches_a_failed_workflow_still_merges(orch):
    """A workflow whose merge failed (here: the gate) is merged again with `orchestra merge WF` once the
    cause is fixed. Its result branch, a tester's that added no commit of its own, is not merged into
    anything, so cleanup must not delete it as if it were."""
    config(orch, 'gate = "exit 3"\n')
    request = (
        "Add a greeting module\n"
        "@fake if-role implementer write greeting.py def greet():\\n    return 1\\n\n"
        "@fake if-role implementer commit Add greeting\n"
        f"@fake if-role reviewer structured {APPROVE}\n"
    )
    wf_id = start(orch, "feature", request)
    assert orch.work().returncode == 0
    wf = workflow(orch, wf_id)
    assert wf["state"] == "failed" and "gate command failed" in wf["error"], wf
    result_branch = task_of(wf, "test")["branch"]
    report = json.loads(orch.run("cleanup", "--json", check=True).stdout)
    assert result_branch not in {b["branch"] for b in report["deleted_branches"]}
    assert f"refs/heads/{result_branch}" in refs(orch.repo)
    kept = {k.get("branch"): k["reason"] for k in report["kept"] if k["what"] == "branch"}
    assert f"its workflow {wf_id} is failed" in kept[result_branch]
    config(orch, "")
    merged = orch.run("merge", wf_id)
    assert merged.returncode == 0, merged.stderr
    assert workflow(orch, wf_id)["state"] == "succeeded"
    assert git(orch.repo, "show", "main:greeting.py").startswith("def greet")


def test_cleanup_dry_run_says_what_the_real_run_does_with_commits_only_in_a_checkout(orch):
    tid = orch.submit("work\n@fake write a.txt a\n@fake commit Add a")
    assert orch.work().returncode == 0
    task = orch.show(tid)
    checkout, branch = Path(task["worktree"]), task["branch"]
    git(checkout, "commit", "-q", "--allow-empty", "-m", "by hand")
    by_hand = git(checkout, "rev-parse", "--short", "HEAD")
    kept = (
        f"kept worktree {checkout}: has commits the main repository does not have (on {branch}); "
        f"'orchestra respond {tid} TEXT' continues its session and brings them home when that run ends\n"
        f"  {by_hand} by hand\n"
        f"kept branch {branch}: checked out in {checkout}\n"
    )
    for args in (("--dry-run",), ("--dry-run", "--force"), ("--force",)):
        out = orch.run("cleanup", *args, check=True).stdout
        assert out == kept, (args, out)  # no "would remove", no "would lose": what the real --force does
    dry = json.loads(orch.run("cleanup", "--dry-run", "--force", "--json", check=True).stdout)
    real = json.loads(orch.run("cleanup", "--force", "--json", check=True).stdout)
    assert {**dry, "dry_run": False} == real and real["kept"][0]["unsaved"] == [f"{by_hand} by hand"]
    assert checkout.is_dir() and git(orch.repo, "rev-parse", branch) == task["branch_sha"]


def test_workflow_cancel_stops_live_steps_and_keeps_branches(orch):
    wf_id = start(
        orch, "feature", "Slow design.\n@fake if-role architect write notes.md draft\n@fake if-role architect sleep 60"
    )
    worker = orch.start_worker()
    orch.wait_for(
        lambda: (
            workflow(orch, wf_id)["tasks"]
            and any(t["state"] == "running" and t["pid"] for t in workflow(orch, wf_id)["tasks"].values())
        ),
        what="first step running",
    )
    status = orch.run("status", check=True).stdout
    assert f"{wf_id}  0/5 steps done" in status  # design, implement, test, review, merge
    still = orch.run("workflow", "wait", wf_id, "--timeout", "0.5")
    assert still.returncode == 124 and f"{wf_id} running" in still.stdout
    out = orch.run("workflow", "cancel", wf_id, check=True).stdout
    assert out.strip() == f"{wf_id} cancelled"
    first = next(iter(workflow(orch, wf_id)["tasks"].values()))
    orch.wait_for(lambda: orch.state(first["id"]) == "cancelled", what="step cancelled")
    wf = workflow(orch, wf_id)
    assert wf["state"] == "cancelled" and len(wf["instances"]) == 1
    # The architect's partial work is kept on its branch.
    assert git(orch.repo, "show", f"{first['branch']}:notes.md") == "draft"
    ended = orch.run("workflow", "wait", wf_id, "--timeout", "30")
    assert ended.returncode == 1 and f"{wf_id} cancelled" in ended.stdout
    again = orch.run("workflow", "cancel", wf_id)
    assert again.returncode == 1 and "already ended (cancelled)" in again.stderr
    retried = orch.run("retry", first["id"])  # a step of a cancelled workflow would run for nothing
    assert retried.returncode == 1 and f"a step of workflow {wf_id}, which was cancelled" in retried.stderr
    assert orch.state(first["id"]) == "cancelled"
    worker.terminate()
    worker.wait(timeout=10)
