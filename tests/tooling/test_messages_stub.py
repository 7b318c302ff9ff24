"""The Messages API stub (fixtures/messages_stub.py): its HTTP contract on its own.

That the real Claude Code CLI runs against it is tested in e2e/test_real_claude_with_stub.py.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUB_PATH = ROOT / "fixtures" / "messages_stub.py"


def _load_stub_module():
    name = "orchestra_test_messages_stub"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, STUB_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ms = _load_stub_module()


# ----------------------------------------------------------------------------- helpers


def _request_body(prompt: str, cwd: str = "/work/some repo", assistant_turns: int = 0) -> dict:
    """A request shaped like the CLI's: reminders + prompt, then the env system message."""
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>\ncontext\n</system-reminder>"},
                {"type": "text", "text": prompt},
            ],
        },
        {
            "role": "system",
            "content": "# Environment\nYou have been invoked in the following environment: \n"
            f" - Primary working directory: {cwd}\n - Is a git repository: true\n",
        },
    ]
    for i in range(assistant_turns):
        messages.append(
            {"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}", "name": "X", "input": {}}]}
        )
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "content": "ok"}]})
    return {"model": "claude-test", "max_tokens": 100, "stream": True, "messages": messages}


def _post(base_url: str, path: str, body: dict, headers: dict | None = None):
    req = urllib.request.Request(
        base_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _parse_sse(raw: bytes) -> list[tuple[str, dict]]:
    events = []
    for chunk in raw.decode().split("\n\n"):
        if not chunk.strip():
            continue
        name = data = None
        for line in chunk.splitlines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
        assert name and data is not None, chunk
        assert data["type"] == name
        events.append((name, data))
    return events


def _assemble(events: list[tuple[str, dict]]) -> dict:
    """Rebuild the message from the stream the way an SDK client does."""
    msg = None
    for name, data in events:
        if name == "message_start":
            msg = dict(data["message"])
            msg["content"] = []
        elif name == "content_block_start":
            block = dict(data["content_block"])
            if block["type"] == "tool_use":
                block["_json"] = ""
            assert data["index"] == len(msg["content"])
            msg["content"].append(block)
        elif name == "content_block_delta":
            block = msg["content"][data["index"]]
            delta = data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                assert delta["type"] == "input_json_delta"
                block["_json"] += delta["partial_json"]
        elif name == "content_block_stop":
            block = msg["content"][data["index"]]
            if block["type"] == "tool_use":
                block["input"] = json.loads(block.pop("_json"))
        elif name == "message_delta":
            msg["stop_reason"] = data["delta"]["stop_reason"]
            msg["usage"]["output_tokens"] = data["usage"]["output_tokens"]
    assert events[-1][0] == "message_stop"
    return msg


@pytest.fixture
def stub():
    s = ms.MessagesStub(
        {
            "vars": {"content": "stub content\n"},
            "scenarios": {
                "flaky": [{"text": "recovered", "fail_first": [{"status": 529}, {"status": 500}]}],
                "two-tools": [
                    {
                        "tool_uses": [
                            {"name": "Bash", "input": {"command": "ls {{cwd}}"}},
                            {"name": "Read", "input": {"file_path": "{{cwd}}/{{file}}"}},
                        ]
                    }
                ],
            },
        }
    )
    s.start()
    yield s
    s.stop()


# ----------------------------------------------------------------------------- HTTP contract


def test_write_file_turn_streams_a_tool_use_with_the_request_cwd(stub):
    status, headers, raw = _post(stub.base_url, "/v1/messages?beta=true", _request_body("[[scenario:write-file]] go"))
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    events = _parse_sse(raw)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    msg = _assemble(events)
    assert msg["model"] == "claude-test"
    assert msg["stop_reason"] == "tool_use"
    text, tool = msg["content"]
    assert text["type"] == "text" and text["text"]
    assert tool["type"] == "tool_use" and tool["name"] == "Write"
    assert tool["id"].startswith("toolu_")
    assert tool["input"] == {"file_path": "/work/some repo/hello.txt", "content": "stub content\n"}
    assert msg["usage"]["input_tokens"] > 0 and msg["usage"]["output_tokens"] > 0


def test_turn_after_a_tool_result_is_final_text(stub):
    body = _request_body("[[scenario:write-file]] go", assistant_turns=1)
    assert ms.has_tool_result(body)
    _status, _, raw = _post(stub.base_url, "/v1/messages", body)
    msg = _assemble(_parse_sse(raw))
    assert msg["stop_reason"] == "end_turn"
    assert [b["type"] for b in msg["content"]] == ["text"]
    assert "hello.txt" in msg["content"][0]["text"]
    # past the end of the scenario: a plain "Done."
    _, _, raw = _post(stub.base_url, "/v1/messages", _request_body("[[scenario:write-file]] go", assistant_turns=5))
    assert _assemble(_parse_sse(raw))["content"][0]["text"] == "Done."


def test_several_tool_uses_and_placeholders(stub):
    _, _, raw = _post(stub.base_url, "/v1/messages", _request_body("[[scenario:two-tools]] x", cwd="/r"))
    msg = _assemble(_parse_sse(raw))
    assert [(b["name"], b["input"]) for b in msg["content"]] == [
        ("Bash", {"command": "ls /r"}),
        ("Read", {"file_path": "/r/hello.txt"}),
    ]


def test_no_marker_gives_plain_text_and_non_streaming_works(stub):
    body = _request_body("just say hi")
    body["stream"] = False
    status, headers, raw = _post(stub.base_url, "/v1/messages", body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    msg = json.loads(raw)
    assert msg["type"] == "message" and msg["role"] == "assistant"
    assert msg["stop_reason"] == "end_turn"
    assert msg["content"][0]["type"] == "text"
    body = _request_body("[[scenario:write-file]] go")
    body["stream"] = False
    msg = json.loads(_post(stub.base_url, "/v1/messages", body)[2])
    assert msg["stop_reason"] == "tool_use" and msg["content"][1]["input"]["file_path"].endswith("/hello.txt")


def test_fail_first_errors_then_the_turn(stub):
    body = _request_body("[[scenario:flaky]] x")
    hdr = {"X-Claude-Code-Session-Id": "s1"}
    status, _, raw = _post(stub.base_url, "/v1/messages", body, hdr)
    assert status == 529
    assert json.loads(raw)["error"]["type"] == "overloaded_error"
    assert _post(stub.base_url, "/v1/messages", body, hdr)[0] == 500
    status, _, raw = _post(stub.base_url, "/v1/messages", body, hdr)
    assert status == 200 and _assemble(_parse_sse(raw))["content"][0]["text"] == "recovered"
    # counted per session
    assert _post(stub.base_url, "/v1/messages", body, {"X-Claude-Code-Session-Id": "s2"})[0] == 529


def test_other_endpoints_are_harmless_and_everything_is_recorded(stub):
    for method in ("HEAD", "GET"):
        req = urllib.request.Request(stub.base_url + "/api/hello", method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
    status, _, raw = _post(stub.base_url, "/v1/messages/count_tokens", _request_body("x"))
    assert status == 200 and json.loads(raw)["input_tokens"] > 0
    status, _, raw = _post(stub.base_url, "/v1/unknown", {"a": 1})
    assert status == 404 and json.loads(raw)["type"] == "error"
    _post(stub.base_url, "/v1/messages?beta=true", _request_body("[[scenario:hello]] hi"), {"x-api-key": "secret"})
    routes = [(r["method"], r["route"]) for r in stub.requests]
    assert routes == [
        ("HEAD", "/api/hello"),
        ("GET", "/api/hello"),
        ("POST", "/v1/messages/count_tokens"),
        ("POST", "/v1/unknown"),
        ("POST", "/v1/messages"),
    ]
    assert stub.requests[-1]["path"] == "/v1/messages?beta=true"
    assert "x-api-key" not in {k.lower() for k in stub.requests[-1]["headers"]}
    [body] = stub.message_requests()
    assert ms.find_prompt(body) == "[[scenario:hello]] hi"


def test_start_stub_function():
    base_url, stop = ms.start_stub({"default": "bash", "vars": {"command": "true"}})
    try:
        _, _, raw = _post(base_url, "/v1/messages", _request_body("no marker"))
        [tool] = _assemble(_parse_sse(raw))["content"]
        assert tool["input"]["command"] == "true"
        assert len(stop.stub.message_requests()) == 1
    finally:
        stop()


def test_out_of_process_with_port_file_and_record(tmp_path):
    port_file = tmp_path / "port"
    record = tmp_path / "requests.jsonl"
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"vars": {"file": "x.txt"}}))
    proc = subprocess.Popen(
        [
            sys.executable,
            str(STUB_PATH),
            "--port-file",
            str(port_file),
            "--script",
            f"@{script}",
            "--record",
            str(record),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        port = int(port_file.read_text())
        _, _, raw = _post(
            f"http://127.0.0.1:{port}", "/v1/messages", _request_body("[[scenario:write-file]] go", cwd="/q")
        )
        assert _assemble(_parse_sse(raw))["content"][1]["input"]["file_path"] == "/q/x.txt"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0
    [entry] = [json.loads(line) for line in record.read_text().splitlines()]
    assert entry["route"] == "/v1/messages" and entry["body"]["model"] == "claude-test"
