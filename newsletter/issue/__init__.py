"""Issue stage: choose what one newsletter issue features, order it, and store it (frozen once sending starts)."""
