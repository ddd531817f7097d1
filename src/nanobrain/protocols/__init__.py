"""Agent protocols: MCP (`nanobrain.protocols.mcp`) and A2A (`nanobrain.protocols.a2a`).

Each needs its extra (`pip install nanobrain[mcp]`, `nanobrain[a2a]`); nothing is imported here.
"""
