"""Running a relay process: `runrelay`'s runner (Daphne, the registry, signals, a bounded
drain), its event loop and its console."""
