"""Batch front ends of the command line: one module per domain, one function per subcommand,
each ``f(args: argparse.Namespace) -> int`` over `core`. No Qt here."""
