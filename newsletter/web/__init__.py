"""Web stage: the subscriber-facing app (one-click unsubscribe, preferences, archive pages, health)."""
