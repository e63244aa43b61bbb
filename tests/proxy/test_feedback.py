"""POST /v1/feedback over real HTTP: labels by response id, key isolation, history, and
every error case in the OpenAI error shape."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.proxy.store.helpers import client, sqlite_rows, store_settings

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
KEYS = {"ALICE_KEY": "sk-alice", "BOB_KEY": "sk-bob"}


def post(url: str, body, key: str | None = None, path: str = "/v1/feedback") -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, bytes):
        return httpx.post(f"{url}{path}", content=body,
                          headers={**headers, "content-type": "application/json"})
    return httpx.post(f"{url}{path}", json=body, headers=headers)


def error_of(resp: httpx.Response) -> dict:
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.fixture
def keyed_gateway(fake_upstream, start_gateway, tmp_path, monkeypatch):
    for env, value in KEYS.items():
        monkeypatch.setenv(env, value)
    keys = [{"name": "alice", "key_env": "ALICE_KEY"}, {"name": "bob", "key_env": "BOB_KEY"}]
    return start_gateway(store_settings(fake_upstream, tmp_path, extra={"api_keys": keys}))


def test_a_label_is_stored_beside_the_exchange_and_the_last_one_wins(keyed_gateway,
                                                                      tmp_path):
    url = keyed_gateway
    rid = client(url, key="sk-alice").chat.completions.create(model="fake",
                                                              messages=PROMPT).id
    first = post(url, {"id": rid, "label": "incorrect", "score": 0.2}, key="sk-alice")
    assert first.status_code == 200, first.text
    assert first.json()["labels"] == 1 and first.json()["id"] == rid
    again = post(url, {"id": rid, "label": "correct", "gold": "Paris", "comment": "ok"},
                 key="sk-alice", path="/kept/v1/feedback")  # with a route prefix
    assert again.status_code == 200 and again.json()["labels"] == 2
    labels = sqlite_rows(tmp_path / "exchanges.sqlite3", "feedback")
    assert [(r["response_id"], r["label"], r["key_name"]) for r in labels] == [
        (rid, "incorrect", "alice"), (rid, "correct", "alice")]
    assert labels[0]["score"] == 0.2 and labels[1]["score"] is None
    assert labels[1]["gold"].startswith("sha256:")  # no text without include_prompt
    assert "Paris" not in labels[1]["gold"] and labels[1]["comment"].startswith("sha256:")


def test_a_key_cannot_label_another_keys_response(keyed_gateway):
    url = keyed_gateway
    rid = client(url, key="sk-alice").chat.completions.create(model="fake",
                                                              messages=PROMPT).id
    resp = post(url, {"id": rid, "label": "correct"}, key="sk-bob")
    assert resp.status_code == 403
    assert error_of(resp)["code"] == "not_your_response" and error_of(resp)["param"] == "id"
    assert post(url, {"id": rid, "label": "correct"}).status_code == 401  # no key at all


def test_unknown_ids_are_404_saying_why(keyed_gateway):
    url = keyed_gateway
    not_ours = post(url, {"id": "chatcmpl-fake", "label": "correct"}, key="sk-alice")
    assert not_ours.status_code == 404
    assert "not a response id of this gateway" in error_of(not_ours)["message"]
    rid = client(url, route=None, key="sk-alice").chat.completions.create(
        model="fake", messages=PROMPT).id  # the default route stores nothing
    unsampled = post(url, {"id": rid, "label": "correct"}, key="sk-alice")
    assert unsampled.status_code == 404
    assert "was not stored" in error_of(unsampled)["message"]
    assert error_of(unsampled)["code"] == "response_not_found"
    old = "chatcmpl-" + "0" * 12 + "1" * 20  # minted in 1970: beyond 30 days of retention
    expired = post(url, {"id": old, "label": "correct"}, key="sk-alice")
    assert expired.status_code == 404 and "expired" in error_of(expired)["message"]


@pytest.mark.parametrize(("body", "param"), [
    ({"label": "correct"}, "id"),
    ({"id": "chatcmpl-x"}, "label"),
    ({"id": "chatcmpl-x", "label": "maybe"}, "label"),
    ({"id": "chatcmpl-x", "label": "correct", "score": 2}, "score"),
    ({"id": "chatcmpl-x", "label": "correct", "colour": "red"}, "colour"),
    ({"id": 7, "label": "correct"}, "id"),
], ids=["no_id", "no_label", "bad_label", "score_over_1", "unknown_field", "id_not_text"])
def test_malformed_bodies_are_400_naming_the_field(keyed_gateway, body, param):
    resp = post(keyed_gateway, body, key="sk-alice")
    assert resp.status_code == 400
    error = error_of(resp)
    assert error["param"] == param and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[1, 2]"], ids=["empty", "bad", "array"])
def test_a_body_that_is_not_a_json_object_is_400(keyed_gateway, raw):
    resp = post(keyed_gateway, raw, key="sk-alice")
    assert resp.status_code == 400 and error_of(resp)["type"] == "invalid_request_error"


def test_a_gateway_without_a_store_says_so(gateway):
    resp = post(gateway, {"id": "chatcmpl-" + "a" * 32, "label": "correct"})
    assert resp.status_code == 404 and error_of(resp)["code"] == "store_disabled"


@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_responses_api_ids_can_be_labelled_too(keyed_gateway, tmp_path, stream):
    url = keyed_gateway
    responses = client(url, key="sk-alice").responses
    if stream:
        events = list(responses.create(model="fake", input="Capital?", stream=True))
        response_id = events[-1].response.id
        assert {e.response.id for e in events if hasattr(e, "response")} == {response_id}
    else:
        response_id = responses.create(model="fake", input="Capital?").id
    assert response_id.startswith("resp_")
    resp = post(url, {"id": response_id, "label": "unsure"}, key="sk-alice")
    assert resp.status_code == 200, resp.text
    [label] = sqlite_rows(tmp_path / "exchanges.sqlite3", "feedback")
    assert label["response_id"] == "chatcmpl-" + response_id.removeprefix("resp_")


def test_labels_produced_offline_go_in_as_jsonl_each_line_judged_alone(keyed_gateway,
                                                                       tmp_path):
    url = keyed_gateway
    alice = client(url, key="sk-alice")
    ids = [alice.chat.completions.create(model="fake", messages=PROMPT).id for _ in range(2)]
    bobs = client(url, key="sk-bob").chat.completions.create(model="fake", messages=PROMPT).id
    lines = [{"id": ids[0], "label": "correct"}, {"id": ids[1], "label": "incorrect"},
             {"id": bobs, "label": "correct"}, {"id": ids[0], "label": "nonsense"},
             {"id": "chatcmpl-fake", "label": "correct"}]
    body = "\n".join(json.dumps(line) for line in lines).encode() + b"\n\n{broken\n"
    resp = httpx.post(f"{url}/v1/feedback/bulk", content=body,
                      headers={"authorization": "Bearer sk-alice",
                               "content-type": "application/jsonl"})
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert (result["stored"], result["failed"]) == (2, 4)
    assert [(r["line"], r["status"]) for r in result["data"]] == [
        (1, 200), (2, 200), (3, 403), (4, 400), (5, 404), (7, 400)]
    assert result["data"][3]["error"]["param"] == "label"
    labels = sqlite_rows(tmp_path / "exchanges.sqlite3", "feedback")
    assert [(r["response_id"], r["label"]) for r in labels] == [
        (ids[0], "correct"), (ids[1], "incorrect")]


def test_an_empty_bulk_upload_is_400(keyed_gateway):
    resp = post(keyed_gateway, b"\n", key="sk-alice", path="/v1/feedback/bulk")
    assert resp.status_code == 400 and "no feedback lines" in error_of(resp)["message"]
