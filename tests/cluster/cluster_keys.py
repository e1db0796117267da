"""The SECRET_KEY the test nodes share, and hop markers signed with it.

A cluster node refuses the public development key (runrelay), so the nodes get this one; a
test that plays a node (or someone who has the key) signs markers with it here."""

from __future__ import annotations

from django.test import override_settings

from relay.cluster.hop import sign

CLUSTER_SECRET_KEY = "cluster-tests-only-secret-key-0123456789-abcdefghijklmnop"


def mint(node: str, client: tuple[str, int], bound: bytes) -> str:
    """A marker the test nodes believe: `bound` is relay.cluster.hop.binding of the request."""
    with override_settings(SECRET_KEY=CLUSTER_SECRET_KEY):
        return sign(node, client, bound).decode()
