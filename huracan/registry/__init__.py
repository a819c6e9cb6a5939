"""Model registry: versions with manifests, the champion/challenger gate, promotion, rollback."""
