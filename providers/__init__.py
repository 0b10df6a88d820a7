"""chatplug's built-in providers, registered through chatplug's own entry points."""
