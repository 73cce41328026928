"""``--seeds`` as ``0-4`` (a range) or ``0,3,7`` (a list): shared by the benchmark scripts (standard library only, so
that scripts run in the peer venv too)."""


def seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]
