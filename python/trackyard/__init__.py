"""trackyard: a realtime media server (SFU) that speaks the LiveKit protocol."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("trackyard")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
