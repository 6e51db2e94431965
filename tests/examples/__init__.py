"""The examples, served over real HTTP with the real services they need."""
