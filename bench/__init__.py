"""`manage.py benchrelay`: how fast is the relay compared with talking to the app directly?

Everything here is stdlib plus the `wrk` binary and the two tunnel clients; nothing imports
Django, so the pieces run as plain scripts (`python -m bench.app`, `python -m bench.holder`).

- `app`: the local app behind the tunnels (fixed 1 KiB / 1 MiB bodies, a hashing POST sink).
- `payload`: the deterministic bytes of big downloads and uploads, and their sha256.
- `procs`: child processes, their output line by line, and stopping them for sure.
- `wrk`: one wrk run, read back as numbers through a Lua `done` hook.
- `transfer`: one 100 MiB download or upload over a plain socket, sha256 checked.
- `holder`: registers many tunnels and holds their idle pool sockets (the scale scenario).
- `scenarios`: starts everything and runs the interleaved rounds.
- `report`: medians, ratios, the table and `bench-results.json`.
"""
