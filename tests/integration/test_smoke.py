"""The server starts from a config file, answers health, and two participants see each other."""

from support.media_standin import StandInMediaBackend
from support.servers import InProcessServer, ServerProcess, http_get, make_config
from support.signal_client import SignalClient
from support.tokens import join_token


async def test_server_process_health_and_validate():
    server = ServerProcess(make_config()).start()
    try:
        status, body, _ = await http_get(server.url + "/")
        assert (status, body) == (200, "OK")
        assert (await http_get(server.url + "/healthz"))[:2] == (200, "OK")
        assert (await http_get(server.url + "/readyz"))[:2] == (200, "ready")  # single node: no etcd to ask
        status, body, headers = await http_get(server.url + "/rtc/validate")
        assert status == 401 and headers.get("Access-Control-Allow-Origin") == "*"
        token = join_token("alice", "r1")
        status, body, _ = await http_get(server.url + "/rtc/validate", headers={"Authorization": f"Bearer {token}"})
        assert (status, body) == (200, "success")
    finally:
        server.cleanup()


async def test_two_participants_see_each_other():
    server = await InProcessServer(make_config(), media=StandInMediaBackend()).start()
    try:
        alice = await SignalClient.connect(server.ws_url, join_token("alice", "r1"))
        join_a = await alice.expect("join")
        assert join_a.participant.identity == "alice" and join_a.participant.sid.startswith("PA_")
        assert join_a.room.sid.startswith("RM_") and join_a.room.name == "r1"
        bob = await SignalClient.connect(server.ws_url, join_token("bob", "r1"), v1=False)
        join_b = await bob.expect("join")
        assert [p.identity for p in join_b.other_participants] == ["alice"]
        seen = await alice.expect_update_for("bob")
        assert seen.sid == join_b.participant.sid
        await alice.close(); await bob.close()
    finally:
        await server.stop()
