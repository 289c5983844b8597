"""Provisioning: manifests, the cache, verified downloads and safe archive extraction."""
