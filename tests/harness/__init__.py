"""Test harness shared by the test suites: real processes, raw HTTP, a fake tunnel client.

Imported as `harness` (pytest puts `tests/` on sys.path for the root conftest)."""
