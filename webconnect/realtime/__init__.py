"""Real-time messaging: the /ws/ protocol, hub, history, presence and their REST API."""
