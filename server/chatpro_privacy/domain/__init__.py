"""Use cases and the rules of the privacy policy, one sub-package per capability (kernel,
records, vault, consent, organisations, accounts, content, rights, retention, compliance).
No gRPC here: services/ converts, edge/ maps errors."""
