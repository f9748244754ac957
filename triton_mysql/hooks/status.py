"""Placeholder: the status command lands with the operator work."""
from ..discovery import connect


def run(config, as_json: bool = False) -> int:
    discovery = connect(config)
    discovery.list(config.kv_prefix + "/")
    return 0
