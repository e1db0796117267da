"""The tunnels in memory: a pool socket, the Tunnel that owns its pool sockets, the registry
of live tunnels, and a tunnel's plan quota."""
