"""Everything that talks to the outside world (or stands in for it), one module per service."""
