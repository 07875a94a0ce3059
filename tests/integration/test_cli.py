"""The `trackyard` command as an operator uses it."""

import subprocess
import sys
import time

from livekit import api

from support.servers import ServerProcess, http_get, make_config


def run_cli(*args: str, timeout: float = 20.0, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trackyard", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_token_create_verifies_with_livekit_api():
    out = run_cli("token", "create", "--room", "r1", "--identity", "alice", "--name", "Alice",
                  "--api-key", "k1", "--api-secret", "s" * 32)
    assert out.returncode == 0, out.stderr
    claims = api.TokenVerifier("k1", "s" * 32).verify(out.stdout.strip())
    assert claims.identity == "alice" and claims.name == "Alice"
    assert claims.video.room_join and claims.video.room == "r1"


def test_token_defaults_to_dev_keys_and_admin_grants():
    out = run_cli("token", "--room", "r1", "--admin", "--list")
    assert out.returncode == 0, out.stderr
    claims = api.TokenVerifier("devkey", "secret").verify(out.stdout.strip())
    assert claims.video.room_admin and claims.video.room_list and not claims.video.room_join


def test_bad_config_names_the_key_and_exits_nonzero(tmp_path):
    cases = {
        "room:\n  emtpy_timeout: 5\nkeys: {k: s}\n": "room.emtpy_timeout",
        "port: seventy\nkeys: {k: s}\n": "port",
        "rtc:\n  udp_port: 70000\nkeys: {k: s}\n": "rtc.udp_port",
        "port: 7880\n": "keys",
        "keys: {k: s}\nwebhook:\n  urls: [http://127.0.0.1:9/x]\n  api_key: other\n": "webhook.api_key",
    }
    for body, key in cases.items():
        path = tmp_path / "bad.yaml"
        path.write_text(body)
        out = run_cli("server", "--config", str(path))
        assert out.returncode != 0
        assert key in out.stderr, (key, out.stderr)


async def test_server_from_config_file_serves_until_sigterm():
    server = ServerProcess(make_config()).start()
    try:
        status, body, _ = await http_get(server.url + "/")
        assert (status, body) == (200, "OK")
        assert server.alive()
    finally:
        started = time.monotonic()
        code = server.stop()
        server.cleanup()
    assert code == 0
    assert time.monotonic() - started < 10


async def test_dev_mode_uses_dev_keys_loopback_and_uvloop(tmp_path):
    import socket

    from support.servers import free_port
    from support.signal_client import SignalClient
    from support.tokens import join_token

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "trackyard", "server", "--dev", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "dev server did not start"
                time.sleep(0.05)
        client = await SignalClient.connect(f"ws://127.0.0.1:{port}",
                                            join_token("alice", "r1", key="devkey", secret="secret"))
        assert (await client.expect("join")).participant.identity == "alice"
        assert (await client.ping()).last_ping_timestamp > 0
        await client.close()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "listening on 127.0.0.1 port" in out
    assert "event loop uvloop" in out
    assert "DEBUG" in out  # --dev logs at debug level
