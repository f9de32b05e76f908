"""The `docket` command line: one module per subcommand, discovered by `main`."""
