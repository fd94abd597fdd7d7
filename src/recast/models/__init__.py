"""Model specs (packaged alias, hub id, local folder, GGUF file), fetching and loading."""
