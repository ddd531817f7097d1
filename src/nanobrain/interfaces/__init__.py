"""Ways in: the `nanobrain` command line (and, later, the HTTP server and web UI)."""
