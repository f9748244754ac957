"""server_id allocation stays unique when the discovery service was wiped (its counter restarts at 1)."""
from __future__ import annotations

from triton_mysql.hooks.on_start import _allocate_server_id
from triton_mysql.mysql.flavor import MARIADB, MYSQL
from triton_mysql.keys import ClusterKeys, encode
from triton_mysql.records import ClusterStore


def test_counter_skips_ids_of_known_nodes_and_the_snapshot_writers(discovery_server):
    discovery = discovery_server.client()
    keys = ClusterKeys(discovery_server.kv_root())
    # Nodes that survived a wiped discovery service republish their records with their old ids.
    discovery.put(keys.node("a"), encode({"node": "a", "server_id": 1}))
    discovery.put(keys.node("b"), encode({"node": "b", "server_id": 2}))
    store = ClusterStore(discovery, keys)
    assert _allocate_server_id(store) == 3
    assert _allocate_server_id(store, avoid=frozenset({4, 5})) == 6
    assert _allocate_server_id(store) == 7


def test_writers_of_a_gtid_position():
    assert MARIADB.gtid_server_ids("0-1-8,1-3-20") == {1, 3}
    assert MARIADB.gtid_server_ids("") == set()
    assert MYSQL.gtid_server_ids("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5") == set()
