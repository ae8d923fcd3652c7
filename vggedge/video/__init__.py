"""Video input and output for the stream application: sources by URI, capture threads, sinks, preview."""
