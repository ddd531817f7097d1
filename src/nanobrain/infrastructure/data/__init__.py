"""Persistence on SQLite (default), PostgreSQL and Redis."""
