"""A run's logs: stored bytes, live wake-ups, the websocket, the API and the pages."""
