"""The lean path's answers to redirects, bodies that are not what was asked, and stalls,
against scripted raw servers (tests/proxy/conformance/ has the same against nginx)."""

from __future__ import annotations

import asyncio

import pytest

from proxy.config import RetrySettings, UpstreamModel
from proxy.errors import UpstreamError, UpstreamTimeout
from proxy.upstream.http1 import HttpClient
from proxy.upstream.openai_http import OpenAIHttpUpstream
from tests.proxy.test_http1_client import ScriptedServer, keep_answering, reply

COMPLETION = b'{"id": "c", "choices": [{"index": 0, "message": {"content": "ok"}}]}'


def upstream(server: ScriptedServer, client: HttpClient, monkeypatch, host="127.0.0.1",
             **model) -> OpenAIHttpUpstream:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-test")
    config = UpstreamModel(name="m", model="x", api_base=f"http://{host}:{server.port}/v1",
                           api_key_env="TEST_UPSTREAM_KEY", proxy="none",
                           **{"timeout_s": 2.0, **model})
    return OpenAIHttpUpstream(config, RetrySettings(max_attempts=1), client)


def answers(*by_path: tuple[bytes, bytes]):
    """Answers each request by the first (path prefix, answer) whose prefix it starts with."""
    async def handler(server, reader, writer, number):
        while (request := await server.read_request(reader)) is not None:
            path = request.split(b" ", 2)[1]
            writer.write(next(a for prefix, a in by_path if path.startswith(prefix)))
            await writer.drain()
    return handler


@pytest.mark.parametrize("status", ["307 Temporary Redirect", "308 Permanent Redirect"])
async def test_307_and_308_are_followed_with_the_same_body(monkeypatch, status):
    moved = reply(b"", "Location: /v2/chat/completions", status=status)
    async with ScriptedServer(answers((b"/v1/", moved), (b"/v2/", reply(COMPLETION)))) as srv:
        async with HttpClient() as client:
            result = await upstream(srv, client, monkeypatch).complete({"messages": []})
    assert result["id"] == "c"
    second = srv.requests[1]
    assert second.startswith(b"POST /v2/chat/completions HTTP/1.1")
    assert b"Authorization: Bearer sk-test" in second and b'"messages":[]' in second


async def test_authorization_is_not_sent_to_another_host(monkeypatch):
    async with ScriptedServer(keep_answering(reply(COMPLETION))) as target:
        moved = reply(b"", f"Location: http://localhost:{target.port}/v1/chat/completions",
                      status="307 Temporary Redirect")
        async with ScriptedServer(keep_answering(moved)) as origin:
            async with HttpClient() as client:
                await upstream(origin, client, monkeypatch).complete({"messages": []})
    assert b"Authorization" not in target.requests[0]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_302_is_an_error_naming_status_and_location(monkeypatch, stream):
    moved = reply(b"", "Location: https://login.example/sso", status="302 Found")
    async with ScriptedServer(keep_answering(moved)) as server:
        async with HttpClient() as client:
            up = upstream(server, client, monkeypatch)
            with pytest.raises(UpstreamError, match="HTTP 302 redirecting to "
                                                    "https://login.example/sso") as caught:
                if stream:
                    [c async for c in up.stream({"messages": []})]
                else:
                    await up.complete({"messages": []})
    assert caught.value.code == "upstream_redirect" and caught.value.status == 502


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_an_html_body_is_named_by_content_type_and_first_bytes(monkeypatch, stream):
    page = reply(b"<html><body>Sign in</body></html>", "Content-Type: text/html")
    async with ScriptedServer(keep_answering(page)) as server:
        async with HttpClient() as client:
            up = upstream(server, client, monkeypatch)
            shown = r"text/html: '<html>" if stream else r"text/html, 33 bytes: '<html>"
            with pytest.raises(UpstreamError, match=shown + "<body>Sign in") as caught:
                if stream:
                    [c async for c in up.stream({"messages": []})]
                else:
                    await up.complete({"messages": []})
    assert caught.value.code == "upstream_bad_response"


async def test_a_stream_that_stalls_is_a_timeout_naming_the_seconds(monkeypatch):
    async def handler(server, reader, writer, number):
        await server.read_request(reader)
        event = b'data: {"choices": []}\n\n'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        await asyncio.sleep(5)

    async with ScriptedServer(handler) as server:
        async with HttpClient() as client:
            up = upstream(server, client, monkeypatch, timeout_s=0.3)
            chunks = up.stream({"messages": []})
            assert await anext(chunks) == {"choices": []}
            with pytest.raises(UpstreamTimeout, match=r"nothing arrived for 0.3s "
                                                      r"\(timeout_s\) after 1 event"):
                await anext(chunks)


def test_an_unsupported_proxy_in_the_environment_stops_the_start_naming_the_fix(monkeypatch):
    monkeypatch.setenv("ALL_PROXY", "socks5://user:pw@127.0.0.1:1080")
    config = UpstreamModel(name="m", model="x", api_base="https://api.example.com/v1")
    with pytest.raises(ValueError, match=r"model 'm': unsupported proxy "
                                         r"'socks5://127.0.0.1:1080'.*proxy: .*or NO_PROXY"):
        OpenAIHttpUpstream(config, RetrySettings(), HttpClient())
    assert OpenAIHttpUpstream(config.model_copy(update={"proxy": "none"}), RetrySettings(),
                              HttpClient()).endpoint.proxy is None


def test_an_unreadable_tls_file_stops_the_start_naming_the_model(tmp_path):
    config = UpstreamModel(name="m", model="x", api_base="https://api.example.com/v1",
                           ca_file=str(tmp_path / "missing-ca.pem"))
    with pytest.raises(ValueError, match=r"model 'm': cannot load its TLS files"):
        OpenAIHttpUpstream(config, RetrySettings(), HttpClient())
