"""The `triton-mysql` command line (placeholder until the hooks land)."""
import click


@click.group()
def main() -> None:
    """Self-operating MySQL/MariaDB replication."""
