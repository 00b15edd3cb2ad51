"""The archive service: archive, compress, vault, retain, delete and restore threads."""
