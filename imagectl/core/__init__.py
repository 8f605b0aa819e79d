"""The pure core: values in, values out (config, increments, templates, plans, locks, packages)."""
