"""arch/: the architecture-specific code the model needs (x86_64 only)."""
