"""Protocol logic with no HTTP in it."""
