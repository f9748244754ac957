"""triton-mysql: self-operating MySQL/MariaDB replication for identical containers."""

__version__ = "0.1.0"
