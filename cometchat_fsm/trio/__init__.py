"""The trio front end: `open_client` over trio-websocket."""
