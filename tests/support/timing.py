"""Recorded (never asserted) timings printed by tests: `pytest -s` shows them."""


def timing(label: str, seconds: float) -> None:
    print(f"[timing] {label}: {seconds * 1000:.1f} ms")
