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
