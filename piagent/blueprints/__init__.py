"""HTTP only: parse, validate, call the chat service, shape the response."""
