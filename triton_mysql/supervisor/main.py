"""`containerbuddy` entry point (placeholder until the supervisor lands)."""


def main() -> None:
    raise SystemExit("containerbuddy: not built yet")
