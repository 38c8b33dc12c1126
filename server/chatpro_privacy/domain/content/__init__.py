"""Messages, conversations, call recordings, and the monitoring of them (ORG-2 to ORG-5)."""
