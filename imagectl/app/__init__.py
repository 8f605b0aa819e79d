"""The use cases: what each command carries out, over the core and through the adapters."""
