"""Every proto <-> domain conversion, one module per proto file, so servicers only read the
request, call the domain and hand back what these build."""
