"""The results of the use cases, in one place: what each command hands back to the CLI (its
`--json` shape; what a person sees is made from it in commands/). One module per command
family, so that a command imports only its own (history and resolve stay fast); import-free."""
