"""Caching: an in-process LRU, a hierarchy of levels (L1 memory, L2 Redis, L3 SQL), LLM answers."""

from .hierarchy import CacheHierarchy, CacheLevel, CacheLookup
from .llm_cache import CachingProvider, cache_key
from .lru import LRUCache

__all__ = ["CacheHierarchy", "CacheLevel", "CacheLookup", "CachingProvider", "LRUCache", "cache_key"]
