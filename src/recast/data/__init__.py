"""Data: raw sources -> preference pairs and eval prompts -> validation -> splits."""
