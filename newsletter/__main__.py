"""`python -m newsletter`: the same command as the `newsletter` console script."""

from newsletter.cli import main

main()
