"""The HTTP API and `txmon alerts`: the processor's output topics, read for a person."""
