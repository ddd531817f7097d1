"""Infrastructure: data (stores, history, sessions, export, cache), parallel processing, monitoring."""
