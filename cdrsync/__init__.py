"""cdrsync: every finished Asterisk / FreePBX call, from asteriskcdrdb into Planfix, once."""

__version__ = "0.1.0"
