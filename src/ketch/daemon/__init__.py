"""ketchd, the composition root: reads the configuration, builds the services and serves the Engine API."""
