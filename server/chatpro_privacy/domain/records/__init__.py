"""Records of what happened: the outbox, the audit trail, the deletion feed, the attempts
throttles count."""
