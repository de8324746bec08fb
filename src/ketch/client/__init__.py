"""Engine API client: talks to ketchd (or dockerd) over its socket only."""
