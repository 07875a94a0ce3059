import os

import pytest

from support.media_standin import StandInMediaBackend
from support.servers import InProcessServer, make_config


@pytest.fixture
def config_overrides() -> dict:
    """Override in a test module (or with indirect parametrization) to change the config."""
    return {}


@pytest.fixture
async def server(config_overrides):
    srv = await InProcessServer(make_config(**config_overrides), media=StandInMediaBackend()).start()
    try:
        yield srv
    finally:
        await srv.stop()


# --- a cluster's etcd and signal clients (test_cluster_*.py, test_ops_cli.py) ---------------
@pytest.fixture(scope="module")
def etcd():
    """A real etcd for the module (tests/support/etcd.py); every test takes its own key prefix."""
    from support.etcd import EtcdServer

    server = EtcdServer().start()
    yield server
    server.cleanup()


@pytest.fixture
async def clients():
    """Signal clients a test opened (append them); closed when it ends."""
    opened = []
    yield opened
    for client in opened:
        await client.close()


# --- end to end in network namespaces (test_e2e_*.py) -----------------------------------
# The SDK clients run in namespaces of a `NetLab`; see tests/support/netns.py. Every
# namespace and process is removed by name/PID when the test ends, pass or fail.
#
# TRACKYARD_E2E_REFERENCE=/path/to/livekit-server runs the same tests against the reference
# SFU instead of trackyard (to tell a test bug from a server bug); unset, trackyard runs.
@pytest.fixture
def lab(request):
    """A NetLab with `request.param` client namespaces (2 unless parametrized indirectly)."""
    from support.netns import NetLab, netns_available

    ok, reason = netns_available()
    if not ok:
        pytest.skip(f"network namespaces unavailable: {reason}")
    netlab = NetLab(clients=getattr(request, "param", 2)).start()
    try:
        yield netlab
    finally:
        netlab.close()
        assert netlab.leftovers() == [], f"namespaces left behind: {netlab.leftovers()}"


@pytest.fixture
def lab_server(lab, request):
    """The SFU in the lab's server namespace: trackyard (or the reference, see above).
    `@pytest.mark.lab_config(signal={...})` overrides config sections for trackyard."""
    from support.lab_server import LabServer, ReferenceLabServer, lab_config

    reference = os.environ.get("TRACKYARD_E2E_REFERENCE", "")
    marker = request.node.get_closest_marker("lab_config")
    config = lab_config(lab, **marker.kwargs) if marker is not None else None
    server = (ReferenceLabServer(lab, reference) if reference else LabServer(lab, config)).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def agents(lab, lab_server):
    """start(client_index, identity, room, scenario, **options) -> SdkAgent; options become
    sdk_agent.py flags (duration defaults to AGENT_DURATION, connect_timeout to
    CONNECT_TIMEOUT); every agent is stopped by PID at teardown."""
    from support.sdk_agent import AGENT_DURATION, CONNECT_TIMEOUT, SdkAgent
    from support.tokens import join_token

    started = []

    def start(index: int, identity: str, room: str, scenario: str, **options):
        options.setdefault("duration", AGENT_DURATION)
        options.setdefault("connect_timeout", CONNECT_TIMEOUT)
        agent = SdkAgent.start(lab, lab.client_ns[index], lab_server.ws_url, join_token(identity, room),
                               scenario, name=identity, **options)
        started.append(agent)
        return agent

    try:
        yield start
    finally:
        for agent in started:
            agent.cleanup()
