"""Small complete apps that rebuild real services on jobtrail (``make example-<name>``)."""
