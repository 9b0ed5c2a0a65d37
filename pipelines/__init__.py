"""grepq's entry points: one Beam pipeline per `grepq` subcommand."""
