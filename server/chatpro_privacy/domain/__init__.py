"""Use cases and the rules of the privacy policy. One module per area; no gRPC here."""
