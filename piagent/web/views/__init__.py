"""One module per blueprint, each with a top-level `bp`: parse, validate, call
the chat service, shape the response. HTTP only."""
