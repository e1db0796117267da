"""`manage.py benchrelay`: how fast is the relay compared with talking to the app directly?

Everything here is stdlib plus the `wrk` binary, the tunnel clients, the reference server
(Node.js) and py-spy for `--profile`; nothing imports Django, so the pieces run as plain
scripts (`python -m bench.app`, `python -m bench.holder`).

- `app`: the local app behind the tunnels (fixed 1 KiB / 1 MiB bodies, a hashing POST sink).
- `payload`: the deterministic bytes of big downloads and uploads, and their sha256.
- `procs`: child processes, their output line by line, and stopping them for sure.
- `wrk`: one wrk run, read back as numbers through a Lua `done` hook.
- `transfer`: one 100 MiB download or upload over a plain socket, sha256 checked.
- `holder`: registers many tunnels and holds their idle pool sockets (the scale scenario).
- `targets`: where a scenario sends its traffic, and the relays' status API.
- `reference`: the localtunnel reference server `make bench` installs: its versions, why it
  is missing when it is, starting it.
- `scenarios`: starts everything and runs the interleaved rounds.
- `loaded`: many tunnels, each loaded by a wrk of its own, at the same time.
- `scale`: idle tunnels by the thousand, and one measured tunnel beside them.
- `profile`: `--profile`, py-spy's samples of the relay and our lt.
- `report`: medians, ratios and `bench-results.json`.
- `table`: the tables printed from them.
"""
