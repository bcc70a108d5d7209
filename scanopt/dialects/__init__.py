"""The IR scanopt compiles step functions into: an xDSL ``scan`` dialect on builtin tensor types."""
