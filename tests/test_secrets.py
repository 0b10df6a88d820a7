"""Keys never leak (repr, str, logs, errors, CLI, JSON) and TLS verification is never off."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from chatplug import ChatplugError, ConfigurationError, ProviderConnectionError, Registry
from chatplug.settings import load_settings
from chatplug.testing import ScriptedServer

from .conftest import PLANTED_KEY, ROOT, run_cli

MESSAGES = [{"role": "user", "content": "hi"}]


def keyed_registry(server: ScriptedServer, **settings: object) -> Registry:
    values: dict[str, object] = {
        "provider_urls": {"openai": server.url + "/v1", "gravityengine": server.url},
        "provider_api_keys": {"openai": SecretStr(PLANTED_KEY)},
        "retry_backoff": 0.01,
    }
    values.update(settings)
    return Registry(settings=load_settings(**values))


def test_the_key_is_in_no_log_record_even_at_debug(
        chatplug_server: ScriptedServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    registry = keyed_registry(chatplug_server)
    provider = registry.get("OpenAI")
    assert provider.create(messages=MESSAGES, model="m") == "You said: hi"
    chatplug_server.add(status=401, text=f"bad key {PLANTED_KEY}")
    with pytest.raises(ChatplugError):
        provider.create(messages=MESSAGES, model="m")
    # A record that names the header, the way a debugging hook might log it.
    logging.getLogger("urllib3.connectionpool").debug(
        "sending headers {'Authorization': 'Bearer %s'}", PLANTED_KEY)
    logging.getLogger("chatplug.http").debug("api-key: %s", PLANTED_KEY)
    assert caplog.records
    for record in caplog.records:
        assert PLANTED_KEY not in record.getMessage()
    assert PLANTED_KEY not in caplog.text
    registry.close()


def test_the_key_is_in_no_repr_or_error(chatplug_server: ScriptedServer) -> None:
    registry = keyed_registry(chatplug_server)
    provider = registry.get("OpenAI")
    texts = [repr(registry), repr(registry.settings), str(registry.settings),
             repr(provider), repr(provider.as_dict())]
    for status in (400, 401, 403, 404, 429, 500):
        chatplug_server.add(status=status, text=f"echo {PLANTED_KEY} echo")
        with pytest.raises(ChatplugError) as info:
            provider.create(messages=MESSAGES, model="m", max_retries=0)
        texts += [str(info.value), repr(info.value), repr(vars(info.value))]
    for text in texts:
        assert PLANTED_KEY not in text
    registry.close()


def test_the_key_is_in_no_cli_output(chatplug_server: ScriptedServer) -> None:
    env = {"CHATPLUG_OPENAI_API_KEY": PLANTED_KEY, "CHATPLUG_OPENAI_URL": chatplug_server.url
           + "/v1", "CHATPLUG_MAX_RETRIES": "0"}
    outputs = [run_cli("providers", env=env), run_cli("providers", "--json", env=env),
               run_cli("providers", "OpenAI", env=env),
               run_cli("providers", "OpenAI", "--json", env=env),
               run_cli("chat", "-p", "OpenAI", "-m", "m", "hi", env=env)]
    chatplug_server.add(status=401, text=f"Incorrect API key provided: {PLANTED_KEY}")
    outputs.append(run_cli("chat", "-p", "OpenAI", "-m", "m", "hi", env=env))
    assert outputs[-1].returncode == 1
    for result in outputs:
        assert PLANTED_KEY not in result.stdout + result.stderr


def test_no_source_turns_tls_verification_off() -> None:
    for path in [*ROOT.glob("core/**/*.py"), *ROOT.glob("providers/*.py"),
                 *ROOT.glob("examples/**/*.py")]:
        assert "verify=" + "False" not in path.read_text().replace(" ", ""), path


@pytest.mark.parametrize("value", ["false", "0", "/no/such/bundle.pem"])
def test_ca_bundle_must_be_a_path(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CHATPLUG_CA_BUNDLE", value)
    with pytest.raises(ConfigurationError, match="cannot be turned off"):
        load_settings()


def test_ca_bundle_falls_back_to_the_usual_variables(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("placeholder")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert load_settings().effective_ca_bundle == str(bundle)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/no/such/file")  # stale: ignored, not fatal
    assert load_settings().effective_ca_bundle == str(bundle)
    monkeypatch.setenv("CHATPLUG_CA_BUNDLE", str(bundle))
    assert load_settings().effective_ca_bundle == str(bundle)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ScriptedServer, Path]]:
    """The scripted server behind TLS with a self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ScriptedServer(lifetime=60)
    server._httpd.socket = context.wrap_socket(server._httpd.socket, server_side=True)
    server.url = server.url.replace("http://", "https://")
    with server:
        yield server, cert


def test_tls_is_verified_and_a_ca_bundle_makes_it_pass(
        tls_server: tuple[ScriptedServer, Path]) -> None:
    server, cert = tls_server
    urls = {"gravityengine": server.url}
    untrusted = Registry(settings=load_settings(provider_urls=urls))
    with pytest.raises(ProviderConnectionError, match=r"TLS verification .* failed") as info:
        untrusted.get("GravityEngine").create(messages=MESSAGES)
    assert "CHATPLUG_CA_BUNDLE" in str(info.value)
    assert not info.value.attempts  # a certificate problem is not retried
    trusted = Registry(settings=load_settings(provider_urls=urls, ca_bundle=str(cert)))
    assert trusted.get("GravityEngine").create(messages=MESSAGES) == "You said: hi"
    untrusted.close()
    trusted.close()
