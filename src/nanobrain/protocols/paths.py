"""Where the protocols live in `nanobrain serve`'s app (no imports: the app reads these at import time)."""

CARD_PATH = "/.well-known/agent-card.json"
WORKFLOW_CARD_PATH = "/a2a/{workflow}" + CARD_PATH
PUBLIC_PROTOCOL_PATHS = frozenset({CARD_PATH, WORKFLOW_CARD_PATH})
"""Agent cards are public (clients read them to learn how to authenticate)."""
