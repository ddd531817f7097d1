"""The app's routers, one module each: health, workflows, runs, OpenAI-compatible chat, sessions."""
