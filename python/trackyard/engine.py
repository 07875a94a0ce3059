"""The one module that imports the Rust extension (`trackyard._engine`).

Everything else in trackyard talks to the media engine through this module.
"""

from __future__ import annotations

from trackyard import _engine


def version() -> str:
    """Version of the compiled engine."""
    return _engine.version()


def is_debug_build() -> bool:
    """True when the engine was compiled without optimisations."""
    return _engine.debug_build()
