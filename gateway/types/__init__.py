"""The GraphQL types of each domain (actors, events, matching, webhooks, credentials) and what they share (common)."""
