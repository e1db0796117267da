"""One node of several on one database and one Redis (scale-out): membership (heartbeat,
directory, reclaim), forwarding to peer nodes, hop markers, and the control listener."""
