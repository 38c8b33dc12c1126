"""The gRPC edge: request context, authentication, error mapping, access logs."""
