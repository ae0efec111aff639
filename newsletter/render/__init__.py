"""Render stage: an assembled Issue -> email variants (HTML + text, within the size budget) and the archive page."""
