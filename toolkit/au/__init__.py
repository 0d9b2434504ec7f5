"""Action Unit knowledge (FACS regions, directions, phrases) and, later, AU evidence from flow."""
