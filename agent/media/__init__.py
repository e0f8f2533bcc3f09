"""Media values at the bottom of the agent (frames, audio chunks) and the pure processing of them."""
