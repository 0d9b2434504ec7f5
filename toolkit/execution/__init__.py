"""How work runs, not what it computes: process pools, the sharded runner, block readers, prefetch.

The methods (toolkit/unimer, toolkit/migration) are plain functions of typed records; this package
decides where they run, so a reader meets the method first and a new executor changes one place.
"""
