"""Other formats: Hugging Face model folders (`hf`: export and import)."""
