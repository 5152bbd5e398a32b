"""Inbound API formats other than OpenAI's, relayed over the same keys, routing and billing."""
