"""Ray's token authentication: a coordinator without the cluster's token, or with another, is refused; its tasks
stay queued with their attempts uncounted, and the scheduler, status and doctor say why in one line. With the token,
they run. A cluster of its own (one node), in a network namespace of its own, so it runs beside the main group's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import FAKE_CLAUDE, ROOT
from raycluster import unavailable, up
from test_ray_cluster import Coord

WHY = unavailable()
TOKEN = "orchestra-test-token-6f1c0a9e2b7d4e58"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(WHY is not None, reason=f"Ray cluster tests: {WHY}")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    coord = tmp_path_factory.mktemp("coordinator")
    nodes = tmp_path_factory.mktemp("nodes")
    c = up(
        mask=[coord],
        node_root=nodes,
        workers=[{}],
        env={"PYTHONPATH": str(ROOT), "ORCHESTRA_CLAUDE": str(FAKE_CLAUDE), "GIT_CONFIG_NOSYSTEM": "1"},
        auth_token=TOKEN,
    )
    try:
        yield c
    finally:
        c.down()


def test_without_the_clusters_token_nothing_runs_nothing_is_lost_and_it_says_why(cluster: Any, tmp_path: Path):
    coord = Coord(cluster, "auth", tmp_path)
    try:
        tid = coord.submit("task t\n@fake write t.txt t\n@fake commit add t")
        for mode, token, words in (
            ("disabled", None, "the cluster requires its token (set RAY_AUTH_MODE=token"),
            ("token", "not-the-clusters-token-0123456789", "the cluster refused this machine's token"),
        ):
            coord.env["RAY_AUTH_MODE"] = mode
            coord.env.pop("RAY_AUTH_TOKEN", None)
            if token:
                coord.env["RAY_AUTH_TOKEN"] = token
            worker = coord.run("worker", "--until-idle", timeout=120)
            said = worker.stdout + worker.stderr  # the scheduler's log
            assert worker.returncode == 0, said
            assert f"{tid} back in the queue: cannot join the Ray cluster at {cluster.address}: {words}" in said
            assert f"no new starts: cannot join the Ray cluster at {cluster.address}: {words}" in said
            assert ".cc:" not in said  # none of Ray's own core log lines
            task = coord.show(tid)
            assert (task["state"], task["attempts"]) == ("queued", 0), task
            doctor = coord.run("doctor", "--json")
            assert doctor.returncode == 1
            (finding,) = json.loads(doctor.stdout)["findings"]
            assert finding["kind"] == "executor_unreachable" and words in finding["detail"], finding
            assert TOKEN not in doctor.stdout + doctor.stderr + said
        # A scheduler left running says it too, and `status` shows what it said.
        coord.env["RAY_AUTH_MODE"] = "disabled"
        coord.env.pop("RAY_AUTH_TOKEN", None)
        coord.start_worker()
        status = coord.wait_for(lambda: "no new starts" in (out := coord.run("status").stdout) and out, timeout=90)
        assert f"!! no new starts: cannot join the Ray cluster at {cluster.address}" in status, status
        assert "requires its token" in " ".join(status.split()), status
        coord.close()
        coord.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN)
        worker = coord.run("worker", "--until-idle", timeout=120)
        assert worker.returncode == 0, worker.stdout + worker.stderr
        task = coord.show(tid)
        assert (task["state"], task["attempts"]) == ("succeeded", 1), task
        assert coord.branch_file(task["branch"], "t.txt") == "t"
    finally:
        coord.close()
