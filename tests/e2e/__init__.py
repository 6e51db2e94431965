"""End-to-end tests: real processes started the way users start them."""
