"""Store stage: record parsed posts as deduplicated papers with every sighting kept, and query them."""
