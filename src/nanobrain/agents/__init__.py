"""Agents: steps backed by a language model with tools."""
