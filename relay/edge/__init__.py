"""The visitor's side: Daphne's HTTP server with the relay's hardening, and the router that
sends a tunnel's Host to the proxy and every other host to Django."""
